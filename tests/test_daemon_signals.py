"""``russak run`` as a child process, as systemd runs it: SIGTERM while it is busy
(many inbox files; a slow channel) ends it within 10 s with nothing half-done, SIGHUP
reloads or refuses the file, and systemd hears READY, STATUS, RELOADING, STOPPING."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from sqlalchemy import func, select

from connectors.spool import drop_file
from gateway.app import open_gateway
from gateway.config import load_settings
from gateway.models import Case, InboundMessage, IntakeAttempt, OutboxItem
from gateway.ports import Clock, CursorStore, OutboundMessage, RawMessage, Receipt
from tests import factories

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="signals and systemd sockets: Linux")

REPO = Path(__file__).resolve().parent.parent
STOP_BUDGET = 10.0  # seconds from SIGTERM to exit, as the issue asks


# A slow outbound channel, importable by the child ---------------------------------------


class SlowSpool:
    """The spool channel with every send taking ``delay`` seconds (a slow remote end)."""

    def __init__(self, *, name: str, clock: Clock, path: str, delay: float = 0.5, **options: Any) -> None:
        from connectors.spool import SpoolChannel

        self.name = name
        self._delay = float(delay)
        self._inner = SpoolChannel(name, Path(path), clock=clock, **options)

    def poll(self, cursor: CursorStore) -> Iterator[RawMessage]:
        return self._inner.poll(cursor)

    def acknowledge(self, message: RawMessage) -> None:
        self._inner.acknowledge(message)

    def send(self, message: OutboundMessage) -> Receipt:
        time.sleep(self._delay)
        return self._inner.send(message)


def register_slow_spool() -> None:
    from gateway import registry

    registry.CONNECTORS["slowspool"] = (__name__, "SlowSpool", None)


# The child ----------------------------------------------------------------------------


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "RUSSAK_CONFIG")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env.update(extra)
    return env


@dataclass
class Child:
    proc: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]

    def lines(self) -> list[dict[str, Any]]:
        found = []
        for raw in self.log.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                found.append(json.loads(raw))
            except ValueError:
                found.append({"message": raw, "level": "RAW"})
        return found

    def messages(self, prefix: str) -> list[str]:
        return [line["message"] for line in self.lines() if str(line.get("message", "")).startswith(prefix)]

    def wait_for(self, prefix: str, count: int = 1, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.messages(prefix)) >= count:
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.01)
        pytest.fail(
            f"no {count}x {prefix!r} (exit {self.proc.poll()}):\n"
            + self.log.read_text(errors="replace")[-3000:]
        )

    def terminate(self) -> tuple[int, float]:
        """SIGTERM; the exit code and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=60)
        finally:
            self.handle.close()
        return code, time.monotonic() - started


def start(cfg: Path, *, slow: bool = False, env: dict[str, str] | None = None) -> Child:
    log = cfg.parent / f"daemon-{time.monotonic_ns()}.log"
    handle = log.open("wb")
    boot = "from gateway.cli import main; main()"
    if slow:
        boot = f"import {__name__} as t; t.register_slow_spool(); " + boot
    proc = subprocess.Popen(
        [sys.executable, "-c", boot, "--config", str(cfg), "--log-level", "INFO", "run"],
        stdout=handle,
        stderr=subprocess.STDOUT,
        cwd=REPO,
        env=env or child_env(),
    )
    return Child(proc, log, handle)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = factories.write_config(tmp_path / "gw")
    (tmp_path / "gw" / "spool" / "inbox").mkdir(parents=True, exist_ok=True)
    return path


def inspect(cfg: Path) -> Any:
    return open_gateway(load_settings(cfg))


def scalar(gw: Any, query: Any) -> int:
    with gw.session() as session:
        return int(session.scalar(query) or 0)


# SIGTERM ------------------------------------------------------------------------------


def test_sigterm_during_a_long_poll_exits_quickly_with_every_taken_order_committed(cfg: Path) -> None:
    inbox = cfg.parent / "spool" / "inbox"
    total = 300  # about 50 ms each: a quarter of a minute of work if nothing stopped it
    for i in range(total):
        drop_file(inbox, f"order-{i:03d}.xml", factories.order_xml())
    child = start(cfg)
    child.wait_for("intake spool/", count=10)
    code, seconds = child.terminate()
    assert code == 0, child.log.read_text()[-2000:]
    assert seconds < STOP_BUDGET, f"took {seconds:.1f} s to stop"

    left = sorted(inbox.glob("*.xml"))
    assert left, "the poll finished before the signal; the test proved nothing"
    gw = inspect(cfg)
    try:
        taken = scalar(gw, select(func.count()).select_from(InboundMessage))
        assert taken + len(left) == total  # each file either taken in or still in the inbox
        assert scalar(gw, select(func.count()).select_from(Case)) == taken  # every one committed
        assert scalar(gw, select(func.count()).where(InboundMessage.outcome != "case")) == 0
        assert scalar(gw, select(func.count()).select_from(IntakeAttempt)) == 0  # none half-judged
        from connectors.spool.files import digest

        with gw.session() as session:
            stored = set(session.scalars(select(InboundMessage.external_id)))
        assert not stored & {digest(p.read_bytes()) for p in left}  # what is left was never taken
    finally:
        gw.close()
    assert any(m.startswith("poll spool: stopped, ") for m in child.messages("poll spool: "))
    assert child.messages("russak-gateway stopped")
    assert not [line for line in child.lines() if line.get("level") in ("ERROR", "CRITICAL")]


def test_sigterm_while_a_slow_channel_sends_stops_after_the_send_in_hand(cfg: Path) -> None:
    text = cfg.read_text(encoding="utf-8")
    spool = cfg.parent / "spool"
    cfg.write_text(
        text.replace('type = "spool"', 'type = "slowspool"\ndelay = 0.4').replace(
            'path = "spool"', f'path = "{spool}"'
        ),
        encoding="utf-8",
    )
    for i in range(12):
        drop_file(spool / "inbox", f"order-{i:02d}.xml", factories.order_xml())
    child = start(cfg, slow=True)
    child.wait_for("dispatch outbox ", count=2)
    code, seconds = child.terminate()
    assert code == 0, child.log.read_text()[-2000:]
    assert seconds < STOP_BUDGET, f"took {seconds:.1f} s to stop"

    gw = inspect(cfg)
    try:
        with gw.session() as session:
            rows = [(r.key, r.status, r.lease_until) for r in session.scalars(select(OutboxItem))]
    finally:
        gw.close()
    sent = [key for key, status, _ in rows if status == "sent"]
    pending = [key for key, status, _ in rows if status == "pending"]
    assert sent and pending, "all or nothing was sent; the stop did not land mid-dispatch"
    assert len(sent) + len(pending) == len(rows)
    assert all(lease is None for key, status, lease in rows if status == "pending")  # none left claimed
    delivered = list((spool / ".delivered").iterdir())
    assert len(delivered) == len(sent)  # every send that happened is recorded, no more
    assert len(child.messages("dispatch outbox ")) == len(sent)


# SIGHUP and the notifications ----------------------------------------------------------


@dataclass
class Listener:
    """A datagram socket where systemd would listen; collects what the child says."""

    sock: socket.socket
    path: Path
    received: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                self.received.append(self.sock.recv(4096).decode("utf-8"))
            except TimeoutError:
                continue

    def wait_for(self, prefix: str, after: int = 0, timeout: float = 20.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for message in self.received[after:]:
                if any(line.startswith(prefix) for line in message.splitlines()):
                    return message
            time.sleep(0.02)
        pytest.fail(f"systemd never heard {prefix!r}; got {self.received[-5:]}")


@pytest.fixture
def listener() -> Iterator[Listener]:
    folder = Path(tempfile.mkdtemp(prefix="sdn"))  # sun_path holds only 108 bytes
    path = folder / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    found = Listener(sock, path)
    thread = threading.Thread(target=found.run, daemon=True)
    thread.start()
    try:
        yield found
    finally:
        found._stop.set()
        thread.join(timeout=5)
        sock.close()
        path.unlink(missing_ok=True)
        folder.rmdir()


def test_sighup_reloads_or_refuses_and_systemd_is_told(cfg: Path, listener: Listener) -> None:
    child = start(cfg, env=child_env(NOTIFY_SOCKET=str(listener.path)))
    try:
        assert listener.wait_for("READY=1").startswith("READY=1")
        status = listener.wait_for("STATUS=polled spool ")
        assert status.endswith("; healthy; outbox 0 pending, 0 dead; quarantine 0")

        good = cfg.read_text(encoding="utf-8")
        cfg.write_text(good.replace("poll_interval_seconds = 0.2", "poll_interval_seconds = 0.3"), "utf-8")
        mark = len(listener.received)
        child.proc.send_signal(signal.SIGHUP)
        child.wait_for("configuration reloaded from ")
        reloading = listener.wait_for("RELOADING=1", after=mark)
        assert "MONOTONIC_USEC=" in reloading
        assert listener.wait_for("READY=1", after=mark)
        assert child.messages("configuration reloaded from ")[0].endswith(
            "(changed: gateway.poll_interval_seconds)"
        )

        cfg.write_text(good.replace("[gateway]", "[gateway"), "utf-8")
        child.proc.send_signal(signal.SIGHUP)
        child.wait_for("configuration reload refused; ")
        (refused,) = [
            line for line in child.lines() if line["message"].startswith("configuration reload refused")
        ]
        assert refused["level"] == "ERROR" and "not valid TOML" in refused["message"]
        time.sleep(0.5)
        assert child.proc.poll() is None  # still running, on the previous file
        before = len(child.messages("poll spool: "))
        child.wait_for("poll spool: ", count=before + 2)
    finally:
        code, seconds = child.terminate()
    assert code == 0 and seconds < STOP_BUDGET
    assert listener.wait_for("STOPPING=1")
    assert not [
        line for line in child.lines() if line.get("level") == "RAW" and "Traceback" in line["message"]
    ]
