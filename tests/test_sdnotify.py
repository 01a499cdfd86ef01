"""sd_notify against real AF_UNIX datagram sockets, as systemd would listen."""

from __future__ import annotations

import os
import secrets
import socket
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.ops import sdnotify

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="systemd is Linux only")


@pytest.fixture(autouse=True)
def no_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def listener(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A bound datagram socket on a file path, named in NOTIFY_SOCKET."""
    folder = tmp_path
    if len(str(folder)) > 80:  # sun_path holds only 108 bytes
        folder = Path(tempfile.mkdtemp(prefix="sdn"))
    path = folder / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(2)
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode("utf-8")


def test_without_systemd_everything_is_a_quiet_no_op() -> None:
    assert sdnotify.notify("READY=1") is False
    assert sdnotify.ready("Startet") is False
    assert sdnotify.stopping() is False
    assert sdnotify.status("x") is False
    assert sdnotify.watchdog() is False
    assert sdnotify.reloading() is False
    assert sdnotify.watchdog_interval() is None
    assert sdnotify.enabled() is False


def test_enabled_only_with_a_usable_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.enabled() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "@russak")
    assert sdnotify.enabled() is True
    monkeypatch.setenv("NOTIFY_SOCKET", "/run/systemd/notify")
    assert sdnotify.enabled() is True


def test_reloading_carries_the_monotonic_time(listener: socket.socket) -> None:
    import time

    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert sdnotify.reloading("reloading the configuration") is True
    lines = received(listener).split("\n")
    assert lines[0] == "RELOADING=1"
    assert lines[1].startswith("MONOTONIC_USEC=")
    assert before <= int(lines[1].removeprefix("MONOTONIC_USEC=")) <= before + 5_000_000
    assert lines[2:] == ["STATUS=reloading the configuration"]


def test_ready_with_status_is_one_datagram(listener: socket.socket) -> None:
    assert sdnotify.ready("Startet: 2 kanaler") is True
    assert received(listener) == "READY=1\nSTATUS=Startet: 2 kanaler"


def test_each_helper_sends_its_state(listener: socket.socket) -> None:
    assert sdnotify.ready() is True
    assert received(listener) == "READY=1"
    assert sdnotify.watchdog() is True
    assert received(listener) == "WATCHDOG=1"
    assert sdnotify.stopping() is True
    assert received(listener) == "STOPPING=1"
    assert sdnotify.status("to linjer\nblir en") is True
    assert received(listener) == "STATUS=to linjer blir en"
    assert sdnotify.notify("A=1", "B=æøå") is True
    assert received(listener) == "A=1\nB=æøå"


def test_abstract_namespace_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"russak-test-{secrets.token_hex(8)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert sdnotify.watchdog() is True
        assert received(sock) == "WATCHDOG=1"


def test_socket_errors_return_false(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "nobody-listens.sock"))
    assert sdnotify.ready() is False
    monkeypatch.setenv("NOTIFY_SOCKET", "vsock:2:1234")
    assert sdnotify.ready() is False


def test_nothing_to_send_sends_nothing(listener: socket.socket) -> None:
    assert sdnotify.notify() is False
    listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        listener.recv(4096)


def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "120000000")
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert sdnotify.watchdog_interval() == 60.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert sdnotify.watchdog_interval() is None  # meant for another process
    monkeypatch.delenv("WATCHDOG_PID")
    for bad in ("", "0", "-5", "soon"):
        monkeypatch.setenv("WATCHDOG_USEC", bad)
        assert sdnotify.watchdog_interval() is None
