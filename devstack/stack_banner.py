"""What ``make stack`` prints once everything is up: where each service listens and what to
try against it."""

from __future__ import annotations

import shlex
from pathlib import Path

from devstack.stack import Stack
from devstack.stack_config import (
    LIMITER_SERVICES,
    PROMETHEUS_SERVICE,
    REDIS_SERVICES,
    SENTINEL_SERVICES,
    services,
)

__all__ = ["banner", "redis_cli"]


def redis_cli(password_file: Path | None, arguments: str) -> str:
    """A ``redis-cli`` command line that reads the password from ``password_file`` into
    ``REDISCLI_AUTH`` when the shell runs it, so the password never appears in the text
    or in ``ps``."""
    if password_file is None:
        return f"redis-cli {arguments}"
    return f'REDISCLI_AUTH="$(cat {shlex.quote(str(password_file))})" redis-cli {arguments}'


_LIMITED_HEADERS = {
    "nginx": "RateLimit-Policy / RateLimit headers",
    "envoy": "Envoy's x-ratelimit-* (limits of deploy/envoy/ratelimit.yaml), then the API's",
}


def _envoy_lines(stack: Stack) -> str:
    admin = stack.envoy.admin_url
    return f"""\
  curl -s {admin}/clusters | grep health_flags   # Envoy's view of limiters and APIs
  curl -s {admin}/stats | grep ratelimit          # the filter's ok/over_limit/error counts
  Envoy's bootstrap: {stack.envoy.config_path}
"""


def banner(stack: Stack) -> str:
    """The URLs, PIDs, log directory and a curl / grpcurl / redis-cli cheat sheet; no
    password (the redis-cli lines read theirs from the 0600 files the topology wrote)."""
    config = stack.config
    edge = stack.edge_url
    edge_name = config.edge
    first_limiter = stack.limiters[LIMITER_SERVICES[0]]
    limiter = first_limiter.address
    prometheus = stack.prometheus.url
    topology = stack.topology
    master_host, master_port = topology.current_master()
    sentinel_host, sentinel_port = topology.sentinel_addresses[0]
    processes = stack.processes()
    where = {
        **{name: api.url for name, api in stack.apis.items()},
        **{name: f"grpc://{node.address}" for name, node in stack.limiters.items()},
        **{
            name: f"{node.address[0]}:{node.address[1]}"
            for name, node in zip(
                (*REDIS_SERVICES, *SENTINEL_SERVICES),
                (*topology.data_nodes, *topology.sentinels),
                strict=True,
            )
        },
        edge_name: edge,
        PROMETHEUS_SERVICE: prometheus,
    }
    listing = "\n".join(
        f"  {name:<16} {where[name]:<28} pid {processes[name].pid}" for name in services(edge_name)
    )
    ask_sentinel = redis_cli(
        topology.sentinel_password_file,
        f"-h {sentinel_host} -p {sentinel_port} SENTINEL get-master-addr-by-name "
        f"{topology.master_name}",
    )
    scan_master = redis_cli(
        topology.password_file, f"-h {master_host} -p {master_port} --scan --pattern 'rl:*'"
    )
    return f"""\
The stack is up: limit {config.rate_limit} per {config.time_window} s per client IP (fixed \
window), failure mode {config.failure_mode}.

{listing}

  edge:  {edge}      logs: {stack.log_dir}
  Prometheus: {prometheus} (scrapes both limiters and both APIs every \
{config.scrape_interval})
  Redis password file: {topology.password_file} (mode 0600)
  Sentinel master name: {topology.master_name}

Try:
  curl -i {edge}/                       # not limited; X-Served-By alternates api-1/api-2
  curl -i {edge}/limited_endpoint       # {_LIMITED_HEADERS[edge_name]}
  for i in $(seq 12); do curl -s -o /dev/null -w '%{{http_code}} ' {edge}/limited_endpoint; \
done; echo
  curl -i --interface 127.0.0.2 {edge}/limited_endpoint   # another client: its own budget
  curl -i -H 'X-Forwarded-For: 1.2.3.4' {edge}/limited_endpoint   # ignored: same budget
  grpcurl -plaintext {limiter} list
  grpcurl -plaintext -d '{{"key":"ip:127.0.0.1"}}' {limiter} ratelimit.v1.RateLimiter/ShouldAllow
  grpcurl -plaintext {limiter} grpc.health.v1.Health/Check
  curl -s http://{first_limiter.metrics_address}/metrics | grep ^ratelimit_decisions
  curl -s {prometheus}/api/v1/query --data-urlencode \
'query=sum by (outcome) (ratelimit_decisions_total)'
  {ask_sentinel}
  {scan_master}
  wrk -t2 -c50 -d10s {edge}/health
  kill -9 {processes["api-1"].pid}      # {edge_name} retries on api-2; no request fails
{_envoy_lines(stack) if edge_name == "envoy" else ""}
Ctrl-C stops everything.
"""
