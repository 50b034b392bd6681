"""``python -m devstack`` (``make stack``): the full topology as local processes.

Starts Redis + Sentinels, two limiters, two APIs, Nginx (or Envoy: ``--edge envoy``) and
Prometheus (see ``devstack.stack``), waits for every health check, prints where everything
listens, then waits for Ctrl-C or SIGTERM and stops every process it started. Each flag's
default comes from the environment variable named in its help, else the value shown; port 0
picks a free port.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from devstack.errors import DevstackError
from devstack.prometheus import DEFAULT_SCRAPE_INTERVAL
from devstack.stack import Stack
from devstack.stack_banner import banner
from devstack.stack_config import EDGES, FAILURE_MODES, StackConfig

__all__ = ["main", "parse_args"]

_STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_LIVENESS_EVERY_S = 1.0


def _six_ports(text: str) -> tuple[int, ...]:
    try:
        ports = tuple(int(part) for part in text.split(","))
    except ValueError:
        ports = ()
    if len(ports) != 6:
        raise argparse.ArgumentTypeError(f"expected six ports as P1,...,P6, got {text!r}")
    return ports


def _two_ports(text: str) -> tuple[int, int]:
    parts = [part.strip() for part in text.split(",")]
    if len(parts) != 2 or not all(part.isdigit() for part in parts):
        raise argparse.ArgumentTypeError(f"expected two ports as P1,P2, got {text!r}")
    return int(parts[0]), int(parts[1])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line. Defaults come from the environment (``STACK_*``, and the
    services' own ``RATE_LIMIT``, ``TIME_WINDOW``, ``LIMITER_FAILURE_MODE``) and are
    checked like the flags themselves (argparse converts string defaults)."""
    env = os.environ.get
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="The full topology as local processes: Redis + Sentinels, limiters, "
        "APIs, Nginx, Prometheus. Port 0 picks a free port.",
    )
    parser.add_argument(
        "--host",
        default=env("STACK_HOST", "127.0.0.1"),
        help="loopback address to listen on (env STACK_HOST; %(default)s)",
    )
    parser.add_argument(
        "--edge",
        choices=EDGES,
        default=env("STACK_EDGE", "nginx"),
        help="the proxy in front of the APIs; envoy's ratelimit filter asks the limiters "
        "for deploy/envoy/ratelimit.yaml's limits (env STACK_EDGE; %(default)s)",
    )
    parser.add_argument(
        "--nginx-port",
        type=int,
        default=env("STACK_NGINX_PORT", "8080"),
        help="the edge's port, Nginx or Envoy (env STACK_NGINX_PORT; %(default)s)",
    )
    parser.add_argument(
        "--envoy-admin-port",
        type=int,
        default=env("STACK_ENVOY_ADMIN_PORT", "9901"),
        help="Envoy's admin interface, with --edge envoy (env STACK_ENVOY_ADMIN_PORT; %(default)s)",
    )
    parser.add_argument(
        "--api-ports",
        type=_two_ports,
        default=env("STACK_API_PORTS", "8001,8002"),
        help="api-1,api-2 ports (env STACK_API_PORTS; %(default)s)",
    )
    parser.add_argument(
        "--limiter-ports",
        type=_two_ports,
        default=env("STACK_LIMITER_PORTS", "50051,50052"),
        help="limiter-1,limiter-2 ports (env STACK_LIMITER_PORTS; %(default)s)",
    )
    parser.add_argument(
        "--limiter-metrics-ports",
        type=_two_ports,
        default=env("STACK_LIMITER_METRICS_PORTS", "9091,9092"),
        help="limiter-1,limiter-2 /metrics ports (env STACK_LIMITER_METRICS_PORTS; %(default)s)",
    )
    parser.add_argument(
        "--prometheus-port",
        type=int,
        default=env("STACK_PROMETHEUS_PORT", "9090"),
        help="Prometheus port (env STACK_PROMETHEUS_PORT; %(default)s)",
    )
    parser.add_argument(
        "--scrape-interval",
        default=env("STACK_SCRAPE_INTERVAL", DEFAULT_SCRAPE_INTERVAL),
        help="how often Prometheus scrapes (env STACK_SCRAPE_INTERVAL; %(default)s)",
    )
    parser.add_argument(
        "--redis-ports",
        type=_six_ports,
        default=env("STACK_REDIS_PORTS", "0,0,0,0,0,0"),
        help="redis master, replica-1, replica-2, sentinel-1..3 ports "
        "(env STACK_REDIS_PORTS; default: free ports)",
    )
    parser.add_argument(
        "--rate-limit",
        type=int,
        default=env("RATE_LIMIT", "10"),
        help="requests per window per client IP (env RATE_LIMIT; %(default)s)",
    )
    parser.add_argument(
        "--time-window",
        type=int,
        default=env("TIME_WINDOW", "60"),
        help="window in seconds, fixed (env TIME_WINDOW; %(default)s)",
    )
    parser.add_argument(
        "--failure-mode",
        choices=FAILURE_MODES,
        default=env("LIMITER_FAILURE_MODE", "open"),
        help="limiter or Redis down (env LIMITER_FAILURE_MODE; %(default)s)",
    )
    parser.add_argument(
        "--down-after-ms",
        type=int,
        default=env("STACK_DOWN_AFTER_MS", "1000"),
        help="Sentinel down-after-milliseconds (env STACK_DOWN_AFTER_MS; %(default)s)",
    )
    parser.add_argument(
        "--nginx-workers",
        default=env("STACK_NGINX_WORKERS", "auto"),
        help="Nginx worker_processes (env STACK_NGINX_WORKERS; %(default)s)",
    )
    parser.add_argument(
        "--workdir",
        type=Path,
        default=env("STACK_WORKDIR"),
        help="configs and logs go here and are kept (env STACK_WORKDIR; default: a "
        "temporary directory, removed after a clean stop)",
    )
    return parser.parse_args(argv)


def _config(args: argparse.Namespace) -> StackConfig:
    return StackConfig(
        host=args.host,
        nginx_port=args.nginx_port,
        api_ports=args.api_ports,
        limiter_ports=args.limiter_ports,
        redis_ports=args.redis_ports,
        limiter_metrics_ports=args.limiter_metrics_ports,
        prometheus_port=args.prometheus_port,
        scrape_interval=args.scrape_interval,
        rate_limit=args.rate_limit,
        time_window=args.time_window,
        failure_mode=args.failure_mode,
        down_after_ms=args.down_after_ms,
        nginx_workers=args.nginx_workers,
        edge=args.edge,
        envoy_admin_port=args.envoy_admin_port,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    # SIGTERM while starting: unwind like Ctrl-C, so the stack stops what it started.
    raise KeyboardInterrupt


def _serve(stack: Stack) -> int:
    """Block until SIGINT or SIGTERM, reporting services that exit meanwhile; return the
    signal. The signals stay blocked afterwards, so a second Ctrl-C cannot cut the
    shutdown short."""
    signal.pthread_sigmask(signal.SIG_BLOCK, _STOP_SIGNALS)
    reported: set[int] = set()
    while True:
        received = signal.sigtimedwait(_STOP_SIGNALS, _LIVENESS_EVERY_S)
        if received is not None:
            return received.si_signo
        for name, process in stack.processes().items():
            if process.pid not in reported and not process.is_running():
                reported.add(process.pid)
                print(
                    f"note: {name} (pid {process.pid}) exited with status {process.returncode}; "
                    f"log: {process.log_path}",
                    file=sys.stderr,
                    flush=True,
                )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the stack until interrupted. Exit status: 0 after a clean stop, 1 when it could
    not start, 2 for bad arguments, 130 when interrupted while starting."""
    args = parse_args(argv)
    try:
        config = _config(args)
    except ValueError as exc:
        print(f"python -m devstack: {exc}", file=sys.stderr)
        return 2
    keep = args.workdir is not None
    workdir = args.workdir if keep else Path(tempfile.mkdtemp(prefix="devstack-"))
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"starting the stack in {workdir} ...", flush=True)
    try:
        with Stack(workdir, config) as stack:
            print(banner(stack), flush=True)
            received = _serve(stack)
            print(f"\n{signal.Signals(received).name}: stopping every process ...", flush=True)
    except KeyboardInterrupt:
        print("\ninterrupted while starting; stopped every process.", file=sys.stderr)
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)
        return 130
    except (DevstackError, OSError) as exc:
        print(f"python -m devstack: could not start the stack: {exc}", file=sys.stderr)
        print(f"configs and logs kept in {workdir}", file=sys.stderr)
        return 1
    if not keep:
        shutil.rmtree(workdir, ignore_errors=True)
    print("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
