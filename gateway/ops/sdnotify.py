"""systemd service notifications (sd_notify) without a dependency.

The unit runs with ``Type=notify`` and ``WatchdogSec=``: systemd considers the gateway
started only when it says READY=1, and restarts it when the WATCHDOG=1 pings stop, which
catches a hung scheduler that a plain process check would miss. The protocol is one
datagram of newline-separated ``KEY=value`` lines to the socket named in
``$NOTIFY_SOCKET``, small enough to write here rather than pull in a library.

Outside systemd (tests, the demo, a terminal) every call is a harmless no-op that
returns False, and a socket error is never allowed to take the daemon down.
"""

from __future__ import annotations

import logging
import os
import socket
import time

__all__ = [
    "enabled",
    "notify",
    "ready",
    "reloading",
    "status",
    "stopping",
    "watchdog",
    "watchdog_interval",
]

log = logging.getLogger(__name__)


def _address(value: str) -> str | None:
    """The socket address for ``$NOTIFY_SOCKET``: a path, or '@name' for an abstract one."""
    if value.startswith("@"):
        return "\0" + value[1:]
    if value.startswith("/"):
        return value
    return None  # e.g. "vsock:..." (VMs); not used by a service on the host


def enabled() -> bool:
    """True when there is a socket to notify (``$NOTIFY_SOCKET``), so callers can skip
    the work of composing a status line nobody will read."""
    return _address(os.environ.get("NOTIFY_SOCKET", "")) is not None


def notify(*states: str) -> bool:
    """Send the states (``"READY=1"``, ``"STATUS=..."``) as one datagram to systemd.

    Returns True when the datagram was sent, False when not running under systemd or
    the send failed; never raises, because a missed notification must not stop work.
    """
    target = os.environ.get("NOTIFY_SOCKET", "")
    if not target or not states:
        return False
    address = _address(target)
    if address is None:
        log.debug("NOTIFY_SOCKET has an unsupported address form; not notifying")
        return False
    payload = "\n".join(states).encode("utf-8")
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(payload)
    except OSError as exc:
        log.debug("sd_notify failed: %s", exc)
        return False
    return True


def _one_line(text: str) -> str:
    """Newlines would split a value into bogus extra assignments."""
    return " ".join(text.splitlines())


def ready(status: str = "") -> bool:
    """Tell systemd the service is up (and optionally what it is doing)."""
    states = ["READY=1"]
    if status:
        states.append(f"STATUS={_one_line(status)}")
    return notify(*states)


def reloading(status: str = "") -> bool:
    """Tell systemd a configuration reload has begun; ``ready()`` says it has ended.

    ``MONOTONIC_USEC`` (CLOCK_MONOTONIC, microseconds) is what systemd 253 and newer
    require with ``RELOADING=1``; older versions ignore it.
    """
    states = ["RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"]
    if status:
        states.append(f"STATUS={_one_line(status)}")
    return notify(*states)


def stopping() -> bool:
    """Tell systemd a clean shutdown has begun, so it waits instead of killing."""
    return notify("STOPPING=1")


def status(text: str) -> bool:
    """A one-line status shown by ``systemctl status``; never put personal data in it."""
    return notify(f"STATUS={_one_line(text)}")


def watchdog() -> bool:
    """Ping the watchdog; call it from the loop whose liveness it should prove."""
    return notify("WATCHDOG=1")


def watchdog_interval() -> float | None:
    """Seconds between watchdog pings (half of ``$WATCHDOG_USEC``), or None if off.

    ``$WATCHDOG_PID``, when present, names the process the watchdog is meant for; a
    child that inherited the environment must not ping on the parent's behalf.
    """
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    try:
        micros = int(usec)
        if pid and int(pid) != os.getpid():
            return None
    except ValueError:
        return None
    if micros <= 0:
        return None
    return micros / 2 / 1_000_000
