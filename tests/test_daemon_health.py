"""``/healthz`` and ``/metrics`` against the real server on loopback (a free port):
200 when healthy, 503 when degraded, the metrics the daemon promises, nothing else."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from connectors.spool import drop_file
from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import ConfigError, load_settings
from gateway.context import Gateway
from gateway.models import Lease
from gateway.ops import daemon
from gateway.ops.health import HealthServer
from gateway.ops.metrics import Metrics
from gateway.ops.status import DaemonFacts, Health
from tests import factories


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def get(url: str) -> tuple[int, dict[str, str], bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # loopback only
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
HEALTHY = Health(
    now=NOW,
    daemon=DaemonFacts(running=True, owner="host:1:abc", lease_until=NOW),
    channels=[],
    outbox_pending=0,
    oldest_pending_at=None,
    dead_letters=0,
    quarantine_open=0,
    next_digest_at=None,
    schema_revision="0003",
    schema_head="0003",
)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[], Health]], HealthServer]]:
    servers: list[HealthServer] = []

    def start(health: Callable[[], Health]) -> HealthServer:
        metrics = Metrics(CollectorRegistry())
        metrics.watch_health(health)
        server = HealthServer(("127.0.0.1", free_port()), health, metrics.registry)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


def test_healthy_is_200_and_degraded_is_503(serve: Callable[[Callable[[], Health]], HealthServer]) -> None:
    state = {"health": HEALTHY}
    server = serve(lambda: state["health"])
    code, headers, body = get(server.url + "/healthz")
    assert code == 200
    assert headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {
        "status": "healthy",
        "summary": "healthy; outbox 0 pending, 0 dead; quarantine 0",
        "problems": [],
    }
    state["health"] = replace(HEALTHY, dead_letters=2, problems=["2 dead letter(s)"])
    code, _, body = get(server.url + "/healthz")
    assert code == 503
    assert json.loads(body)["status"] == "degraded"
    assert json.loads(body)["problems"] == ["2 dead letter(s)"]


def test_unreadable_facts_are_503_not_a_crash(serve: Callable[[Callable[[], Health]], HealthServer]) -> None:
    def broken() -> Health:
        raise OSError("disk I/O error")

    server = serve(broken)
    code, _, body = get(server.url + "/healthz")
    assert code == 503
    assert json.loads(body)["problems"] == ["health facts cannot be read: OSError"]
    code, _, text = get(server.url + "/metrics")
    assert code == 200
    samples = {s.name: s.value for f in text_string_to_metric_families(text.decode()) for s in f.samples}
    assert samples["russak_healthy"] == 0
    assert "russak_outbox_pending" not in samples
    assert get(server.url + "/healthz")[0] == 503  # and the server still answers


def test_only_the_two_paths_and_no_version_banner(
    serve: Callable[[Callable[[], Health]], HealthServer],
) -> None:
    server = serve(lambda: HEALTHY)
    code, headers, _ = get(server.url + "/")
    assert code == 404
    assert headers["Server"].strip() == "russak-gateway"  # no Python version
    assert get(server.url + "/healthz?verbose=1")[0] == 200
    request = urllib.request.Request(server.url + "/healthz", method="POST", data=b"x")
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(request, timeout=10)
    assert refused.value.code == 501


# The daemon with the endpoint configured ----------------------------------------------


def metric_samples(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    code, headers, text = get(url + "/metrics")
    assert code == 200
    assert headers["Content-Type"].startswith("text/plain; version=")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


@pytest.fixture
def gateway_with_endpoint(tmp_path: Path, clock: SimulatedClock) -> Iterator[tuple[Gateway, int]]:
    port = free_port()
    cfg = factories.write_config(tmp_path / "gw", extra_gateway=f'health_listen = "{port}"')
    gw = open_gateway(load_settings(cfg), clock=clock, migrate=True)
    yield gw, port
    gw.close()


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_the_running_daemon_serves_health_and_metrics(gateway_with_endpoint: tuple[Gateway, int]) -> None:
    gw, port = gateway_with_endpoint
    url = f"http://127.0.0.1:{port}"  # a bare port binds loopback
    d = daemon.Daemon(gw)
    thread = threading.Thread(target=d.run)
    thread.start()
    try:
        wait_until(lambda: d.health_server is not None)
        wait_until(lambda: get(url + "/healthz")[0] == 200)
        inbox = gw.settings.resolve_path("spool") / "inbox"
        inbox.mkdir(exist_ok=True)  # the channel makes it at its first poll, which may not have run yet
        drop_file(inbox, "ok.xml", factories.order_xml())
        drop_file(inbox, "hostile.xml", b"<!DOCTYPE x [<!ENTITY e 'boom'>]><x>&e;</x>")
        wait_until(lambda: get(url + "/healthz")[0] == 503)  # the quarantine makes it degraded
        code, _, body = get(url + "/healthz")
        assert code == 503
        assert json.loads(body)["problems"] == ["1 message(s) in quarantine"]

        def sent() -> bool:
            value = metric_samples(url).get(("russak_dispatch_attempts_total", (("result", "sent"),)), 0)
            return value >= 1

        wait_until(sent)
        samples = metric_samples(url)
        spool = (("channel", "spool"),)
        assert samples[("russak_intake_messages_total", (("channel", "spool"), ("outcome", "case")))] == 1
        assert (
            samples[("russak_intake_messages_total", (("channel", "spool"), ("outcome", "quarantined")))] == 1
        )
        assert samples[("russak_quarantine_open", ())] == 1
        assert samples[("russak_healthy", ())] == 0
        assert samples[("russak_daemon_running", ())] == 1
        assert ("russak_outbox_pending", ()) in samples
        assert ("russak_outbox_oldest_pending_age_seconds", ()) in samples
        assert samples[("russak_poll_duration_seconds_count", spool)] >= 1
        assert samples[("russak_last_successful_poll_timestamp_seconds", spool)] == gw.clock.now().timestamp()
        assert samples[("russak_dispatch_attempts_total", (("result", "dead"),))] == 0
        assert not any(name.startswith("python_") or name.startswith("process_") for name, _ in samples)
    finally:
        d.request_stop()
        thread.join(timeout=15)
    assert not thread.is_alive()
    with pytest.raises(OSError):  # the endpoint went with the daemon
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_a_port_in_use_stops_the_start_with_the_key_named(gateway_with_endpoint: tuple[Gateway, int]) -> None:
    gw, port = gateway_with_endpoint
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        d = daemon.Daemon(gw)
        with pytest.raises(ConfigError, match=r"gateway\.health_listen: cannot listen on"):
            d.run()
    with gw.session() as session:
        assert session.get(Lease, daemon.INSTANCE_LEASE) is None  # never started
