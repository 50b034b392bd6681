"""TLS and mutual TLS on the limiter's port, certificate reload on SIGHUP, and reflection
switched off: real limiter processes, certificates made by ``openssl`` for each test."""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2

from devstack import ProcessGroup, free_port, wait_until
from devstack.limiter import SERVING, LimiterNode, start_limiter
from ratelimit_client import proto
from tests.certificates import (
    CertificateAuthority,
    Issued,
    peer_certificate,
    requires_openssl,
    serial_of,
)

pytestmark = [pytest.mark.integration, requires_openssl]

# Generous: these tests are about refusals and failed calls, never about a slow machine.
CALL_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Pki:
    """Two unrelated CAs; the limiter's certificate and key are copied to stable paths
    (``cert``, ``key``) so a test can swap them before a SIGHUP."""

    ca: CertificateAuthority
    other_ca: CertificateAuthority
    server: Issued
    cert: Path
    key: Path


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    ca = CertificateAuthority(tmp_path / "pki", "ca")
    server = ca.issue("limiter-1")
    cert, key = tmp_path / "limiter.pem", tmp_path / "limiter.key"
    _install(server, cert, key)
    return Pki(ca, CertificateAuthority(tmp_path / "pki", "other-ca"), server, cert, key)


def _install(issued: Issued, cert: Path, key: Path) -> None:
    """Put ``issued`` at ``cert`` / ``key`` as an operator would: whole files, renamed."""
    for source, target in ((issued.cert, cert), (issued.key, key)):
        staged = target.with_suffix(".new")
        staged.write_bytes(source.read_bytes())
        os.replace(staged, target)


def _credentials(ca: Path, client: Issued | None = None) -> grpc.ChannelCredentials:
    if client is None:
        return grpc.ssl_channel_credentials(ca.read_bytes())
    return grpc.ssl_channel_credentials(
        ca.read_bytes(), client.key.read_bytes(), client.cert.read_bytes()
    )


def _tls_env(pki: Pki, client_ca: Path | None = None) -> dict[str, str]:
    env = {"LIMITER_TLS_CERT": str(pki.cert), "LIMITER_TLS_KEY": str(pki.key)}
    if client_ca is not None:
        env["LIMITER_TLS_CLIENT_CA"] = str(client_ca)
    return env


def _health(address: str, credentials: grpc.ChannelCredentials | None) -> int:
    """Health over a new channel; raises ``grpc.RpcError`` when refused."""
    channel = (
        grpc.insecure_channel(address)
        if credentials is None
        else grpc.secure_channel(address, credentials)
    )
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        return int(stub.Check(health_pb2.HealthCheckRequest(), timeout=CALL_TIMEOUT_S).status)


def _decide(channel: grpc.Channel, key: str) -> proto.ShouldAllowResponse:
    reply: proto.ShouldAllowResponse = proto.RateLimiterStub(channel).ShouldAllow(
        proto.ShouldAllowRequest(key=key), timeout=CALL_TIMEOUT_S
    )
    return reply


def _refused(address: str, credentials: grpc.ChannelCredentials | None) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as raised:
        _health(address, credentials)
    code: grpc.StatusCode = raised.value.code()
    return code


def test_tls_port_answers_tls_clients_and_refuses_plaintext(
    processes: ProcessGroup, pki: Pki
) -> None:
    credentials = _credentials(pki.ca.cert)
    node = start_limiter(processes, "limiter", free_port(), _tls_env(pki), credentials=credentials)
    with node.channel() as channel:
        reply = _decide(channel, "tls:1")
    assert reply.allowed and reply.reason == proto.Reason.REASON_WITHIN_LIMIT
    assert serial_of(peer_certificate(node.host, node.port, pki.ca.cert)) == pki.server.serial
    assert _refused(node.address, None) is grpc.StatusCode.UNAVAILABLE
    # A client trusting another CA does not accept the limiter's certificate.
    assert _refused(node.address, _credentials(pki.other_ca.cert)) is grpc.StatusCode.UNAVAILABLE
    assert node.process.is_running()


def test_mutual_tls_accepts_only_certificates_of_the_client_ca(
    processes: ProcessGroup, pki: Pki
) -> None:
    good = pki.ca.issue("api-1", client=True)
    stranger = pki.other_ca.issue("api-2", client=True)
    credentials = _credentials(pki.ca.cert, good)
    node = start_limiter(
        processes,
        "limiter",
        free_port(),
        _tls_env(pki, client_ca=pki.ca.cert),
        credentials=credentials,
    )
    with node.channel() as channel:
        assert _decide(channel, "mtls:1").reason == proto.Reason.REASON_WITHIN_LIMIT
    assert _refused(node.address, _credentials(pki.ca.cert)) is grpc.StatusCode.UNAVAILABLE
    assert (
        _refused(node.address, _credentials(pki.ca.cert, stranger)) is grpc.StatusCode.UNAVAILABLE
    )
    assert _refused(node.address, None) is grpc.StatusCode.UNAVAILABLE
    assert _health(node.address, credentials) == SERVING


class _Caller:
    """Calls ShouldAllow over one channel, back to back, in a thread, counting answers and
    keeping every error; ``stop()`` joins the thread."""

    def __init__(self, node: LimiterNode) -> None:
        self.answered = 0
        self.errors: list[grpc.RpcError] = []
        self._node = node
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with self._node.channel() as channel:
            while not self._stopping.is_set():
                try:
                    _decide(channel, "reload:calls")
                except grpc.RpcError as exc:
                    self.errors.append(exc)
                else:
                    self.answered += 1

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=30)


@pytest.fixture
def tls_limiter(processes: ProcessGroup, pki: Pki) -> Iterator[LimiterNode]:
    yield start_limiter(
        processes,
        "limiter",
        free_port(),
        {**_tls_env(pki), "RATE_LIMIT": "1000000000"},
        credentials=_credentials(pki.ca.cert),
    )


def test_sighup_serves_a_new_certificate_without_failing_a_call(
    tls_limiter: LimiterNode, pki: Pki
) -> None:
    node = tls_limiter
    renewed = pki.ca.issue("limiter-2")
    caller = _Caller(node)
    try:
        wait_until(
            lambda: True if caller.answered >= 20 else None,
            timeout=30,
            waiting_for="calls on the first connection",
            watch=(node.process,),
        )
        _install(renewed, pki.cert, pki.key)
        node.process.signal(signal.SIGHUP)

        def renewed_served() -> dict[str, object] | None:
            peer = peer_certificate(node.host, node.port, pki.ca.cert)
            return peer if serial_of(peer) == renewed.serial else None

        peer = wait_until(
            renewed_served,
            timeout=30,
            waiting_for="new connections to get the renewed certificate",
            watch=(node.process,),
        )
        assert peer["subject"] == ((("commonName", "limiter-2"),),)
        after_reload = caller.answered
        wait_until(
            lambda: True if caller.answered >= after_reload + 20 else None,
            timeout=30,
            waiting_for="calls on the first connection after the reload",
            watch=(node.process,),
        )
    finally:
        caller.stop()
    assert caller.errors == []
    assert node.process.is_running()
    assert _health(node.address, _credentials(pki.ca.cert)) == SERVING
    assert "TLS certificates reloaded" in node.process.log_tail()


@pytest.mark.parametrize("fault", ["garbage certificate", "key of another certificate"])
def test_failed_reload_keeps_serving_the_old_certificate(
    tls_limiter: LimiterNode, pki: Pki, fault: str
) -> None:
    node = tls_limiter
    if fault == "garbage certificate":
        pki.cert.write_text("not a certificate\n")
        blamed = pki.cert
    else:
        pki.key.write_bytes(pki.ca.issue("unrelated").key.read_bytes())
        blamed = pki.key
    node.process.signal(signal.SIGHUP)
    wait_until(
        lambda: True if "TLS reload failed" in node.process.log_tail() else None,
        timeout=30,
        waiting_for="the limiter to log the failed reload",
        watch=(node.process,),
    )
    failure = next(
        line for line in node.process.log_tail().splitlines() if "TLS reload failed" in line
    )
    assert str(blamed) in failure and "ERROR" in failure
    assert serial_of(peer_certificate(node.host, node.port, pki.ca.cert)) == pki.server.serial
    with node.channel() as channel:
        assert _decide(channel, "reload:bad").reason == proto.Reason.REASON_WITHIN_LIMIT
    assert node.process.is_running()


@pytest.mark.parametrize(
    ("fault", "variable"),
    [
        ("missing certificate file", "LIMITER_TLS_CERT"),
        ("garbage certificate", "LIMITER_TLS_CERT"),
        ("key of another certificate", "LIMITER_TLS_KEY"),
        ("garbage client CA", "LIMITER_TLS_CLIENT_CA"),
        ("certificate without key", "LIMITER_TLS_KEY"),
    ],
)
def test_unusable_tls_files_stop_start_up_with_exit_code_2(
    processes: ProcessGroup, pki: Pki, tmp_path: Path, fault: str, variable: str
) -> None:
    env = _tls_env(pki, client_ca=pki.ca.cert)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm9wZQ==\n-----END CERTIFICATE-----\n")
    if fault == "missing certificate file":
        env["LIMITER_TLS_CERT"] = str(tmp_path / "missing.pem")
    elif fault == "garbage certificate":
        env["LIMITER_TLS_CERT"] = str(garbage)
    elif fault == "key of another certificate":
        env["LIMITER_TLS_KEY"] = str(pki.ca.issue("unrelated").key)
    elif fault == "garbage client CA":
        env["LIMITER_TLS_CLIENT_CA"] = str(garbage)
    else:
        del env["LIMITER_TLS_KEY"]
    process = processes.start(
        "limiter",
        [sys.executable, "-m", "limiter_service"],
        env={"LIMITER_LISTEN": f"127.0.0.1:{free_port()}", **env},
    )
    assert process.wait_exit(30) == 2
    log = process.log_tail()
    assert variable in log, log
    if fault != "certificate without key":
        assert Path(env[variable]).name in log, log
    assert "Traceback" not in log


def test_reflection_off_is_unimplemented_while_decisions_work(processes: ProcessGroup) -> None:
    node = start_limiter(processes, "limiter", free_port(), {"LIMITER_REFLECTION": "false"})
    with node.channel() as channel:
        assert _decide(channel, "reflection:off").reason == proto.Reason.REASON_WITHIN_LIMIT
        for service in ("grpc.reflection.v1alpha", "grpc.reflection.v1"):
            call = channel.stream_stream(
                f"/{service}.ServerReflection/ServerReflectionInfo",
                request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
                response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
            )
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            with pytest.raises(grpc.RpcError) as raised:
                list(call(iter([request]), timeout=CALL_TIMEOUT_S))
            assert raised.value.code() is grpc.StatusCode.UNIMPLEMENTED, service


def test_bad_reflection_setting_names_the_variable(processes: ProcessGroup) -> None:
    process = processes.start(
        "limiter",
        [sys.executable, "-m", "limiter_service"],
        env={"LIMITER_LISTEN": f"127.0.0.1:{free_port()}", "LIMITER_REFLECTION": "sometimes"},
    )
    assert process.wait_exit(30) == 2
    assert "LIMITER_REFLECTION" in process.log_tail()


def test_sighup_without_tls_is_logged_and_survived(processes: ProcessGroup) -> None:
    node = start_limiter(processes, "limiter", free_port(), {})
    node.process.signal(signal.SIGHUP)
    wait_until(
        lambda: True if "nothing to reload" in node.process.log_tail() else None,
        timeout=30,
        waiting_for="the limiter to log the SIGHUP",
        watch=(node.process,),
    )
    assert node.health() == SERVING
