"""The daemon in-process: polls and sends stop between units of work, each step leaves
one log line with its fields, SIGHUP reloads (or refuses) the configuration between
steps, systemd gets a STATUS= line, and every way ``russak run`` can end has its code."""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from connectors.spool import drop_file
from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import ConfigError, load_settings
from gateway.context import Gateway
from gateway.models import InboundMessage, IntakeAttempt, Lease, OutboxItem
from gateway.ops import daemon, exitcodes
from gateway.ops.health import status_line
from gateway.ops.status import gather
from gateway.ports import RawMessage, TransientError
from tests import factories
from tests.conftest import build_gateway

# Helpers ------------------------------------------------------------------------------


def inbox(gw: Gateway) -> Path:
    return Path(gw.channel("spool").inbox)


def drop_orders(gw: Gateway, count: int) -> None:
    for i in range(count):
        drop_file(inbox(gw), f"order-{i:03d}.xml", factories.order_xml())


def wait_until(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def records(caplog: pytest.LogCaptureFixture, prefix: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith(prefix)]


def count(gw: Gateway, model: Any) -> int:
    with gw.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


@pytest.fixture
def gwd(gw_sqlite: Gateway) -> Gateway:
    """A gateway whose channels are built (the spool folders exist)."""
    gw_sqlite.inbound_channels()
    return gw_sqlite


class StopAfter:
    """An inbound channel that sets ``stop`` once ``n`` messages were acknowledged."""

    def __init__(self, inner: Any, stop: threading.Event, n: int) -> None:
        self._inner, self._stop, self._n = inner, stop, n
        self.name = inner.name

    def poll(self, cursor: Any) -> Iterator[RawMessage]:
        return self._inner.poll(cursor)  # type: ignore[no-any-return]

    def acknowledge(self, message: RawMessage) -> None:
        self._inner.acknowledge(message)
        self._n -= 1
        if self._n <= 0:
            self._stop.set()


# Polls ---------------------------------------------------------------------------------


def test_a_stop_ends_the_poll_after_the_message_in_hand(
    gwd: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.intake import batch

    drop_orders(gwd, 5)
    stop = threading.Event()
    judged = 0
    take_in = batch.take_in

    def take_in_then_stop(*args: Any) -> Any:
        nonlocal judged
        result = take_in(*args)
        judged += 1
        if judged == 2:
            stop.set()  # SIGTERM while the second order of the batch is being judged
        return result

    monkeypatch.setattr(batch, "take_in", take_in_then_stop)
    result = daemon.poll_channel(gwd, gwd.channel("spool"), daemon.CycleReport(), stop=stop)
    assert (result.result, result.taken) == ("stopped", 2)
    assert len(list(inbox(gwd).glob("*.xml"))) == 3  # not reached: still at the source
    assert count(gwd, InboundMessage) == 2  # every message judged is committed
    assert count(gwd, IntakeAttempt) == 0  # and none is left counted as a crash suspect


def test_a_stop_after_the_commit_still_acknowledges_what_was_committed(gwd: Gateway) -> None:
    drop_orders(gwd, 5)
    stop = threading.Event()
    channel = StopAfter(gwd.channel("spool"), stop, 2)
    result = daemon.poll_channel(gwd, channel, daemon.CycleReport(), stop=stop)  # type: ignore[arg-type]
    assert (result.result, result.taken) == ("stopped", 5)  # one batch: committed, so acknowledged
    assert not list(inbox(gwd).glob("*.xml"))
    assert count(gwd, InboundMessage) == 5
    assert count(gwd, IntakeAttempt) == 0


def test_every_poll_leaves_one_line_with_its_fields(gwd: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    from gateway.ops.metrics import Metrics

    drop_orders(gwd, 2)
    metrics = Metrics()
    caplog.set_level(logging.INFO)
    for _ in range(2):
        daemon.poll_channel(gwd, gwd.channel("spool"), daemon.CycleReport(), metrics=metrics)
    lines = records(caplog, "poll spool: ")
    assert [r.getMessage().split(", ")[0:2] for r in lines] == [
        ["poll spool: ok", "2 taken in (2 case)"],
        ["poll spool: ok", "0 taken in"],
    ]
    for record in lines:
        assert record.__dict__["channel"] == "spool"
        assert record.__dict__["outcome"] == "ok"
        assert isinstance(record.__dict__["duration_ms"], int)
    sample = metrics.registry.get_sample_value
    assert sample("russak_intake_messages_total", {"channel": "spool", "outcome": "case"}) == 2
    assert sample("russak_polls_total", {"channel": "spool", "result": "ok"}) == 2
    assert sample("russak_poll_duration_seconds_count", {"channel": "spool"}) == 2
    last = sample("russak_last_successful_poll_timestamp_seconds", {"channel": "spool"})
    assert last == gwd.clock.now().timestamp()


def test_a_failing_channel_is_a_failed_poll_and_no_success_time(
    gwd: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.ops.metrics import Metrics
    from gateway.ports import TransientError as Unreachable

    class Broken:
        name = "spool"

        def poll(self, cursor: Any) -> Iterator[RawMessage]:
            raise Unreachable("spool: reading inbox failed (EIO)")

        def acknowledge(self, message: RawMessage) -> None:  # pragma: no cover
            raise AssertionError

    metrics = Metrics()
    caplog.set_level(logging.INFO)
    result = daemon.poll_channel(gwd, Broken(), daemon.CycleReport(), metrics=metrics)  # type: ignore[arg-type]
    assert result.result == "failed"
    assert records(caplog, "poll spool: failed")
    sample = metrics.registry.get_sample_value
    assert sample("russak_polls_total", {"channel": "spool", "result": "failed"}) == 1
    assert sample("russak_last_successful_poll_timestamp_seconds", {"channel": "spool"}) is None


def test_a_channel_another_instance_polls_is_left_alone(gwd: Gateway) -> None:
    from datetime import timedelta

    from gateway.ops.metrics import Metrics

    with gwd.session() as session:
        session.add(
            Lease(name="poll:spool", owner="elsewhere:1:x", until=gwd.clock.now() + timedelta(hours=1))
        )
    drop_orders(gwd, 1)
    metrics = Metrics()
    result = daemon.poll_channel(gwd, gwd.channel("spool"), daemon.CycleReport(), metrics=metrics)
    assert result.result == "busy"
    assert len(list(inbox(gwd).glob("*.xml"))) == 1
    assert (
        metrics.registry.get_sample_value("russak_polls_total", {"channel": "spool", "result": "busy"}) == 1
    )


def test_a_poll_step_ends_after_the_batch_in_which_its_time_ran_out(
    gwd: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gateway.intake import batch

    monkeypatch.setattr(batch, "MAX_MESSAGES", 4)
    monkeypatch.setattr(batch, "MAX_SECONDS", 600)  # batches end by count here, not by the clock
    drop_orders(gwd, 10)
    beats: list[int] = []
    channel = gwd.channel("spool")
    first = daemon.poll_channel(
        gwd, channel, daemon.CycleReport(), budget_seconds=0.0, heartbeat=lambda: beats.append(1)
    )
    assert (first.result, first.taken, first.more) == ("ok", 4, True)
    assert beats == [1]  # after the batch, before the step ended
    assert len(list(inbox(gwd).glob("*.xml"))) == 6  # the rest wait at the source
    assert count(gwd, IntakeAttempt) == 0  # and are not counted as attempted
    rest = daemon.poll_channel(gwd, channel, daemon.CycleReport(), budget_seconds=3600.0)
    assert (rest.taken, rest.more) == (6, False)
    assert count(gwd, InboundMessage) == 10


def test_a_large_inbox_is_taken_in_steps_with_the_outbox_sent_between(
    tmp_path: Path,
    sqlite_only_url: str,
    clock: SimulatedClock,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway.intake import batch

    path = factories.write_config(tmp_path / "gw", database=sqlite_only_url)
    text = path.read_text(encoding="utf-8")
    for key in ("poll_interval_seconds", "tick_interval_seconds"):  # only the steps can do it
        text = text.replace(f"{key} = 0.2", f"{key} = 3600")
    path.write_text(text, encoding="utf-8")
    gw = open_gateway(load_settings(path), clock=clock, migrate=True)
    gw.inbound_channels()
    monkeypatch.setattr(batch, "MAX_MESSAGES", 4)
    monkeypatch.setattr(batch, "MAX_SECONDS", 600)
    monkeypatch.setattr(daemon, "POLL_STEP_SECONDS", 0.0)  # every batch is a step of its own
    drop_orders(gw, 12)
    caplog.set_level(logging.INFO)
    d = daemon.Daemon(gw)
    thread = threading.Thread(target=d.run)
    thread.start()
    try:
        # every alert of every step sent, with the tick's interval an hour away
        wait_until(lambda: count(gw, InboundMessage) == 12 and not pending_rows(gw), timeout=60)
    finally:
        d.request_stop()
        thread.join(timeout=15)
        gw.close()
    assert not thread.is_alive()
    assert not list(inbox(gw).glob("*.xml"))
    steps = [r.getMessage() for r in records(caplog, "poll spool: ok")]
    assert sum("more waiting" in line for line in steps) >= 3, steps  # 12 orders, 4 per step
    # the interval jobs ran once, at the start: the steps came as jobs of their own,
    # none of them skipped, and the outbox sent each step's alerts before the next step
    assert not [r for r in caplog.records if "skipped" in r.getMessage()]


# Dispatch ------------------------------------------------------------------------------


def pending_rows(gw: Gateway) -> list[OutboxItem]:
    with gw.session() as session:
        rows = list(session.scalars(select(OutboxItem).where(OutboxItem.status == "pending")))
        for row in rows:
            session.expunge(row)
        return rows


def with_cases(gw: Gateway, n: int) -> daemon.Daemon:
    drop_orders(gw, n)
    daemon.poll_channel(gw, gw.channel("spool"), daemon.CycleReport())
    d = daemon.Daemon(gw)
    assert pending_rows(d.gw), "intake queued no staff alert"
    return d


def test_every_dispatch_attempt_leaves_one_line_naming_row_channel_and_duration(
    gwd: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    d = with_cases(gwd, 2)
    due = {row.id: row.kind for row in pending_rows(d.gw)}
    caplog.set_level(logging.INFO)
    stats = d._dispatch()
    assert stats.sent == len(due)
    lines = records(caplog, "dispatch outbox ")
    assert sorted(r.__dict__["outbox_id"] for r in lines) == sorted(due)
    for record in lines:
        assert record.getMessage() == (
            f"dispatch outbox {record.__dict__['outbox_id']} ({due[record.__dict__['outbox_id']]}) "
            f"via spool: sent, attempt 1, {record.__dict__['duration_ms']} ms"
        )
        assert (record.__dict__["channel"], record.__dict__["attempt"]) == ("spool", 1)
        assert record.__dict__["outcome"] == "sent"
    assert d.metrics.registry.get_sample_value("russak_dispatch_attempts_total", {"result": "sent"}) == len(
        due
    )


def test_a_stop_ends_dispatch_after_the_send_in_hand(gwd: Gateway) -> None:
    d = with_cases(gwd, 3)
    before = len(pending_rows(d.gw))
    spool = d.gw.channel("spool")
    real_send = spool.send

    def send_then_stop(message: Any) -> Any:
        receipt = real_send(message)
        d.stop.set()  # SIGTERM arrives while this send is in hand
        return receipt

    spool.send = send_then_stop
    stats = d._dispatch()
    assert stats.sent == 1
    left = pending_rows(d.gw)
    assert len(left) == before - 1
    assert all(row.lease_until is None for row in left)  # none claimed and abandoned


def test_a_transient_failure_is_logged_as_retried(gwd: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    d = with_cases(gwd, 1)
    spool = d.gw.channel("spool")

    def unavailable(message: Any) -> Any:
        raise TransientError("spool: writing mail failed (ENOSPC)")

    spool.send = unavailable
    caplog.set_level(logging.INFO)
    stats = d._dispatch()
    assert stats.retried >= 1 and stats.sent == 0
    line = records(caplog, "dispatch outbox ")[0]
    assert ": retried, attempt 1, " in line.getMessage()
    assert line.__dict__["outcome"] == "retried"
    assert d.metrics.registry.get_sample_value("russak_dispatch_attempts_total", {"result": "retried"}) >= 1


def test_the_daemon_gateway_shares_every_public_part_of_the_gateway(gwd: Gateway) -> None:
    d = daemon.Daemon(gwd)
    for f in dataclasses.fields(Gateway):
        if not f.name.startswith("_"):
            assert getattr(d.gw, f.name) is getattr(gwd, f.name), f.name


def test_every_tick_leaves_one_line(gwd: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO)
    daemon.tick(gwd)
    (line,) = records(caplog, "tick: done in ")
    assert re.fullmatch(
        r"tick: done in \d+ ms \(0 reminder\(s\), 0 auto notice\(s\), 1 digest\(s\)\)", line.getMessage()
    )  # 09:00 on a Monday: the day's digest is due
    assert isinstance(line.__dict__["duration_ms"], int)


# Reload --------------------------------------------------------------------------------


def edit(gw: Gateway, old: str, new: str) -> None:
    path = gw.settings.source
    text = path.read_text(encoding="utf-8")
    assert old in text, old
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def test_a_valid_file_replaces_the_live_settings_and_rebuilds_the_channels(
    gwd: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    d = daemon.Daemon(gwd, log_level="INFO")
    old_gw, old_spool = d.gw, d.gw.channel("spool")
    edit(gwd, "poll_interval_seconds = 0.2", "poll_interval_seconds = 7")
    edit(gwd, f'staff = ["{factories.STAFF}"]', f'staff = ["{factories.STAFF}", "ny.ansatt@kommune.example"]')
    caplog.set_level(logging.INFO)
    d._reload()
    assert d.gw is not old_gw
    assert d.gw.settings.gateway.poll_interval_seconds == 7
    assert "ny.ansatt@kommune.example" in d.gw.settings.units[0].staff
    assert d.gw.channel("spool") is not old_spool  # channels rebuilt from the new file
    assert (d.gw.instance_id, d.gw.engine) == (old_gw.instance_id, old_gw.engine)
    (line,) = records(caplog, "configuration reloaded from ")
    assert line.getMessage().endswith("(changed: gateway.poll_interval_seconds, units)")
    assert "ny.ansatt" not in caplog.text  # which keys changed, never their values
    assert d.metrics.registry.get_sample_value("russak_config_reloads_total", {"result": "applied"}) == 1


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("[gateway]", "[gateway", "not valid TOML"),
        ("tick_interval_seconds = 0.2", "tick_interval_seconds = -1", "gateway.tick_interval_seconds"),
        ('org_number = "', 'org_number = "1', "org_number"),
        ('type = "spool"', 'type = "graph"', "unknown type 'graph'"),
        ('path = "spool"', 'path = "no-such-folder"', "spool root"),
    ],
)
def test_an_invalid_file_is_refused_in_one_line_and_the_old_settings_kept(
    gwd: Gateway, caplog: pytest.LogCaptureFixture, old: str, new: str, reason: str
) -> None:
    d = daemon.Daemon(gwd)
    before, spool = d.gw, d.gw.channel("spool")
    edit(gwd, "poll_interval_seconds = 0.2", "poll_interval_seconds = 9")  # must not half-apply
    edit(gwd, old, new)
    caplog.set_level(logging.INFO)
    d._reload()
    assert d.gw is before and d.gw.channel("spool") is spool
    assert d.gw.settings.gateway.poll_interval_seconds == 0.2
    (line,) = records(caplog, "configuration reload refused; the running configuration is kept: ")
    assert line.levelno == logging.ERROR
    assert reason in line.getMessage() and "\n" not in line.getMessage()
    assert d.metrics.registry.get_sample_value("russak_config_reloads_total", {"result": "refused"}) == 1


def test_what_needs_a_restart_is_kept_and_said(gwd: Gateway, caplog: pytest.LogCaptureFixture) -> None:
    d = daemon.Daemon(gwd)
    running = d.gw.settings.gateway.database
    text = gwd.settings.source.read_text(encoding="utf-8")
    gwd.settings.source.write_text(
        text.replace(f'database = "{running}"', 'database = "sqlite:///other.db"').replace(
            "tick_interval_seconds = 0.2", 'tick_interval_seconds = 0.5\nhealth_listen = "9464"'
        ),
        encoding="utf-8",
    )
    caplog.set_level(logging.INFO)
    d._reload()
    assert d.gw.settings.gateway.database == running
    assert d.gw.settings.gateway.health_listen is None
    assert d.gw.settings.gateway.tick_interval_seconds == 0.5
    warned = [r.getMessage() for r in records(caplog, "configuration reload: ")]
    assert warned == [
        "configuration reload: gateway.database changed; it takes effect only after a restart",
        "configuration reload: gateway.health_listen changed; it takes effect only after a restart",
    ]


@pytest.fixture
def running(gwd: Gateway) -> Iterator[daemon.Daemon]:
    """The real daemon (scheduler and all) in a thread; stopped and joined afterwards."""
    d = daemon.Daemon(gwd, log_level="INFO")
    errors: list[BaseException] = []

    def target() -> None:
        try:
            d.run()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=target, name="daemon-under-test")
    thread.start()
    wait_until(lambda: d._scheduler is not None and d._scheduler.running)
    try:
        yield d
    finally:
        d.request_stop()
        thread.join(timeout=15)
        assert not thread.is_alive(), "the daemon did not stop"
        assert not errors, errors


def test_a_reload_while_running_reschedules_between_steps(running: daemon.Daemon, gwd: Gateway) -> None:
    from datetime import time as clock_time
    from datetime import timedelta

    edit(gwd, "poll_interval_seconds = 0.2", "poll_interval_seconds = 3")
    edit(gwd, "tick_interval_seconds = 0.2", 'tick_interval_seconds = 4\ndigest_time = "06:45:00"')
    running.request_reload()
    assert running.reloaded.wait(15)
    scheduler = running._scheduler
    assert scheduler.get_job("poll").trigger.interval == timedelta(seconds=3)
    assert scheduler.get_job("tick").trigger.interval == timedelta(seconds=4)
    digest = {f.name: str(f) for f in scheduler.get_job("digest").trigger.fields}
    assert (digest["hour"], digest["minute"]) == ("6", "45")
    assert running.gw.settings.gateway.digest_time == clock_time(6, 45)


def test_a_stop_while_running_ends_quickly_and_frees_the_lease(gwd: Gateway) -> None:
    d = daemon.Daemon(gwd)
    thread = threading.Thread(target=d.run)
    thread.start()
    wait_until(lambda: count(gwd, Lease) >= 1)
    wait_until(lambda: d._scheduler is not None and d._scheduler.running)
    started = time.monotonic()
    d.request_stop()
    thread.join(timeout=15)
    assert not thread.is_alive()
    assert time.monotonic() - started < 10
    with gwd.session() as session:
        assert session.get(Lease, daemon.INSTANCE_LEASE) is None


# STATUS= -------------------------------------------------------------------------------


@pytest.fixture
def notify_socket(monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    folder = Path(tempfile.mkdtemp(prefix="sdn"))  # sun_path holds only 108 bytes
    path = folder / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    for name in ("WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def datagrams(sock: socket.socket) -> list[str]:
    found = []
    sock.setblocking(False)
    try:
        while True:
            found.append(sock.recv(4096).decode("utf-8"))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(True)
    return found


def test_status_line_after_every_poll_and_tick(gwd: Gateway, notify_socket: socket.socket) -> None:
    d = daemon.Daemon(gwd)
    daemon.acquire_instance_lease(d.gw)
    d._poll()
    d._tick()
    states = [s for s in datagrams(notify_socket) if s.startswith("STATUS=")]
    assert states == [
        "STATUS=polled spool 0 s ago; healthy; outbox 0 pending, 0 dead; quarantine 0",
        "STATUS=polled spool 0 s ago; healthy; outbox 0 pending, 0 dead; quarantine 0",
    ]


def test_status_line_says_what_is_wrong(gwd: Gateway) -> None:
    drop_file(inbox(gwd), "bad.xml", b"<not-an-order/>")
    daemon.cycle(gwd)
    line = status_line(gather(gwd))
    assert line.startswith("polled spool 0 s ago; degraded: no daemon running; 1 message(s) in quarantine;")
    assert line.endswith("quarantine 1")
    gwd2 = build_gateway(
        gwd.settings.base_dir / "fresh",
        f"sqlite:///{gwd.settings.base_dir}/fresh.db",
        SimulatedClock(gwd.clock.now()),
    )
    try:
        assert status_line(gather(gwd2)).startswith("polled spool never; ")
    finally:
        gwd2.close()


def test_no_status_work_without_systemd(gwd: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    d = daemon.Daemon(gwd)
    monkeypatch.setattr(d, "health", lambda: pytest.fail("gathered health with nobody listening"))
    d._report_status()


# Exit codes ----------------------------------------------------------------------------


def test_exit_codes_are_named_and_distinct() -> None:
    codes = [e.code for e in exitcodes.EXIT_CODES]
    assert len(codes) == len(set(codes))
    assert exitcodes.EXIT_CONFIG == 78 and exitcodes.EXIT_KEY == 77
    assert exitcodes.RESTART_PREVENTED == (
        exitcodes.EXIT_SCHEMA,
        exitcodes.EXIT_KEY,
        exitcodes.EXIT_CONFIG,
    )
    for code in codes:
        assert 0 <= code < 126  # not the shell's 126/127/128+N


def test_each_failure_of_a_start_maps_to_its_code(tmp_path: Path, clock: SimulatedClock) -> None:
    code = exitcodes.exit_code_for
    with pytest.raises(ConfigError) as missing:
        load_settings(tmp_path / "nowhere.toml")
    assert code(missing.value) == exitcodes.EXIT_CONFIG

    cfg = factories.write_config(tmp_path / "a")
    settings = load_settings(cfg)
    key = tmp_path / "a" / "russak.key"
    key.chmod(0o644)
    with pytest.raises(ConfigError) as open_key:
        open_gateway(settings, clock=clock, migrate=True)
    assert code(open_key.value) == exitcodes.EXIT_KEY
    key.chmod(0o600)
    open_gateway(settings, clock=clock, migrate=True).close()
    os.replace(factories.write_config(tmp_path / "b").parent / "russak.key", key)  # another installation's
    with pytest.raises(ConfigError) as wrong_key:
        open_gateway(settings, clock=clock)
    assert code(wrong_key.value) == exitcodes.EXIT_KEY

    assert code(daemon.AlreadyRunning("another gateway")) == exitcodes.EXIT_ALREADY_RUNNING
    assert code(OperationalError("connect", {}, Exception("refused"))) == exitcodes.EXIT_UNAVAILABLE
    from alembic.util import CommandError

    assert code(CommandError("Can't locate revision identified by 'ffff'")) == exitcodes.EXIT_SCHEMA
    assert code(RuntimeError("a bug")) == exitcodes.EXIT_SOFTWARE


def test_health_listen_is_checked_at_load(tmp_path: Path) -> None:
    from gateway.config import listen_address

    assert listen_address("9464") == ("127.0.0.1", 9464)
    assert listen_address(":9464") == ("127.0.0.1", 9464)
    assert listen_address("0.0.0.0:9464") == ("0.0.0.0", 9464)
    assert listen_address("[::1]:9464") == ("::1", 9464)
    for bad in ("::1:9464", "localhost:http", "70000", ""):
        with pytest.raises(ValueError):
            listen_address(bad)
    cfg = factories.write_config(tmp_path, extra_gateway='health_listen = "127.0.0.1:port"')
    with pytest.raises(ConfigError, match=r"gateway\.health_listen"):
        load_settings(cfg)
    cfg = factories.write_config(tmp_path, extra_gateway="")
    assert load_settings(cfg).gateway.health_listen is None  # off by default
