"""TLS (with client certificates) and ACL users towards Redis and Sentinel, on real servers.

A TLS-only Redis requires a client certificate and has no usable ``default`` user; a
TLS-only Sentinel monitors it (over TLS, with its own client certificate) and also requires
an ACL user. Certificates are made at test time.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from grpc_health.v1 import health_pb2

from devstack import ProcessGroup, free_port, wait_for_tcp, wait_until
from devstack.limiter import LimiterNode, start_limiter
from ratelimit_client import proto
from tests.certificates import CertificateAuthority, Issued, requires_openssl
from tests.integration.client import LimiterClient

pytestmark = [pytest.mark.integration, requires_openssl]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING
USER, PASSWORD = "limiter", "s3cret-data"
SENTINEL_USER, SENTINEL_PASSWORD = "watcher", "s3cret-sentinel"


@dataclass(frozen=True)
class TlsRedis:
    ca: CertificateAuthority
    client: Issued
    port: int
    sentinel_port: int


def _tls_lines(ca: CertificateAuthority, server: Issued, client: Issued) -> list[str]:
    return [
        f'tls-cert-file "{server.cert}"',
        f'tls-key-file "{server.key}"',
        f'tls-client-cert-file "{client.cert}"',
        f'tls-client-key-file "{client.key}"',
        f'tls-ca-cert-file "{ca.cert}"',
        "tls-auth-clients yes",
        "tls-replication yes",
    ]


@pytest.fixture(scope="module")
def tls_redis(tmp_path_factory: pytest.TempPathFactory) -> TlsRedis:
    directory = tmp_path_factory.mktemp("redis-tls")
    ca = CertificateAuthority(directory / "pki", "redis-ca")
    server = ca.issue("redis-server")
    client = ca.issue("redis-client", client=True)
    port, sentinel_port = free_port(), free_port()
    (directory / "redis.conf").write_text(
        "\n".join(
            [
                "port 0",
                f"tls-port {port}",
                "bind 127.0.0.1",
                f'dir "{directory}"',
                'save ""',
                *_tls_lines(ca, server, client),
                "user default off",
                f"user {USER} on >{PASSWORD} ~rl:* +@all",
            ]
        )
        + "\n"
    )
    (directory / "sentinel.conf").write_text(
        "\n".join(
            [
                "port 0",
                f"tls-port {sentinel_port}",
                "bind 127.0.0.1",
                f'dir "{directory}"',
                *_tls_lines(ca, server, client),
                f"sentinel monitor tlsmaster 127.0.0.1 {port} 1",
                f"sentinel auth-user tlsmaster {USER}",
                f"sentinel auth-pass tlsmaster {PASSWORD}",
                "user default off",
                f"user {SENTINEL_USER} on >{SENTINEL_PASSWORD} +@all",
            ]
        )
        + "\n"
    )
    return TlsRedis(ca, client, port, sentinel_port)


@pytest.fixture
def servers(tls_redis: TlsRedis, processes: ProcessGroup, tmp_path: Path) -> TlsRedis:
    directory = tls_redis.ca.directory.parent
    redis_process = processes.start("redis-tls", ["redis-server", str(directory / "redis.conf")])
    wait_for_tcp("127.0.0.1", tls_redis.port, 20.0, redis_process)
    sentinel = processes.start("sentinel-tls", ["redis-sentinel", str(directory / "sentinel.conf")])
    wait_for_tcp("127.0.0.1", tls_redis.sentinel_port, 20.0, sentinel)
    return tls_redis


def _data_env(tls: TlsRedis) -> dict[str, str]:
    return {
        "REDIS_USERNAME": USER,
        "REDIS_PASSWORD": PASSWORD,
        "REDIS_TLS_CA": str(tls.ca.cert),
        "REDIS_TLS_CERT": str(tls.client.cert),
        "REDIS_TLS_KEY": str(tls.client.key),
        "LIMITER_HEALTH_INTERVAL_MS": "200",
    }


def _admin(tls: TlsRedis) -> redis.Redis:
    return redis.Redis(
        port=tls.port,
        username=USER,
        password=PASSWORD,
        ssl=True,
        ssl_ca_certs=str(tls.ca.cert),
        ssl_certfile=str(tls.client.cert),
        ssl_keyfile=str(tls.client.key),
        decode_responses=True,
    )


async def _decides(node: LimiterNode, tls: TlsRedis) -> None:
    client = LimiterClient(node.address)
    key = f"tls:{uuid.uuid4()}"
    try:
        reply = await client.should_allow(key)
    finally:
        await client.close()
    assert reply.reason == proto.Reason.REASON_WITHIN_LIMIT
    with _admin(tls) as admin:
        assert admin.keys(f"rl:{{default:{key}}}:*"), "the decision was not stored in Redis"


async def test_plain_redis_backend_over_tls_with_an_acl_user(
    servers: TlsRedis, processes: ProcessGroup
) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{servers.port}/0", **_data_env(servers)}
    node = start_limiter(processes, "limiter", free_port(), env)
    assert node.health() == SERVING
    await _decides(node, servers)


async def test_sentinel_backend_over_tls_with_acl_users(
    servers: TlsRedis, processes: ProcessGroup
) -> None:
    env = {
        "SENTINEL_HOSTS": f"127.0.0.1:{servers.sentinel_port}",
        "REDIS_MASTER": "tlsmaster",
        "SENTINEL_USERNAME": SENTINEL_USER,
        "SENTINEL_PASSWORD": SENTINEL_PASSWORD,
        **_data_env(servers),
    }
    node = start_limiter(processes, "limiter", free_port(), env)
    assert node.health() == SERVING
    await _decides(node, servers)


@pytest.mark.parametrize(
    ("missing", "why"),
    [("REDIS_TLS_CA", "no TLS"), ("REDIS_USERNAME", "the default user is off")],
)
def test_without_tls_or_user_nothing_is_decided(
    servers: TlsRedis, processes: ProcessGroup, missing: str, why: str
) -> None:
    env = {"REDIS_URL": f"redis://127.0.0.1:{servers.port}/0", **_data_env(servers)}
    del env[missing]
    if missing == "REDIS_TLS_CA":
        del env["REDIS_TLS_CERT"], env["REDIS_TLS_KEY"]
    node = start_limiter(processes, "limiter", free_port(), env, wait_serving=False)
    status = wait_until(lambda: node.health() or None, timeout=10.0, waiting_for=f"health ({why})")
    assert status == NOT_SERVING
