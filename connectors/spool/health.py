"""Whether the spool folders are safe to use, and warnings that do not flood the log.

A world-writable spool folder lets any local user drop an order into inbox/, swap a
notice in outbox/ before the police's pickup reads it, or plant a link. The channel
refuses to use such a folder instead of trusting it, and says in one line which
folder it is and the command that fixes it. ``problems`` is also what
``SpoolChannel.check()`` (and so ``russak doctor``) reports.

The daemon polls every few seconds; a refusal is logged at most once a minute per
problem, by the monotonic clock, so a misconfiguration is visible without drowning
everything else.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
from collections.abc import Callable, Iterable
from pathlib import Path

from gateway.ports import PermanentError

log = logging.getLogger(__name__)

LOG_INTERVAL = 60.0  # seconds between two log lines about the same problem
_MAX_PROBLEMS = 256


class RateLimitedLog:
    """Log a warning per problem key at most once per ``interval`` seconds."""

    def __init__(self, monotonic: Callable[[], float], interval: float = LOG_INTERVAL) -> None:
        self._monotonic = monotonic
        self._interval = interval
        self._last: dict[str, float] = {}
        self._lock = threading.Lock()

    def warning(self, problem: str, message: str, *args: object) -> bool:
        """Log ``message`` unless ``problem`` was logged within the interval."""
        now = self._monotonic()
        with self._lock:
            last = self._last.get(problem)
            if last is not None and now - last < self._interval:
                return False
            if len(self._last) >= _MAX_PROBLEMS:
                self._last.clear()
            self._last[problem] = now
        log.warning(message, *args)
        return True


def world_writable(path: Path, label: str) -> str | None:
    """The refusal text if ``path`` is a world-writable folder, else None."""
    try:
        info = os.stat(path)
    except OSError:
        return None  # missing or unreadable: the operation itself reports that
    if stat.S_ISDIR(info.st_mode) and info.st_mode & stat.S_IWOTH:
        return (
            f"spool: {label} is world-writable, so any local user could drop or swap files in it; "
            f"refusing to use it; fix: chmod o-w {path}"
        )
    return None


def refuse_world_writable(folders: Iterable[tuple[Path, str]], warn: RateLimitedLog) -> None:
    """Raise ``PermanentError`` for the first world-writable folder, logging it (rate-limited)."""
    for path, label in folders:
        text = world_writable(path, label)
        if text is not None:
            warn.warning(f"world-writable:{path}", "%s", text)
            raise PermanentError(text)


def problems(folders: Iterable[tuple[Path, str, bool]]) -> list[str]:
    """Human-readable problems of ``(path, label, required)`` folders.

    A folder that is not required (processed/, rejected/ before first use) is only
    checked when it exists.
    """
    found: list[str] = []
    for path, label, required in folders:
        try:
            info = os.stat(path)
        except FileNotFoundError:
            if required:
                found.append(f"spool: {label} is missing ({path}); create it (mode 0700) or restart")
            continue
        except OSError as exc:
            found.append(f"spool: {label} cannot be examined ({path}): {os.strerror(exc.errno or 0)}")
            continue
        if not stat.S_ISDIR(info.st_mode):
            found.append(f"spool: {label} is not a directory ({path}); move it away")
            continue
        text = world_writable(path, label)
        if text is not None:
            found.append(text)
        if not os.access(path, os.W_OK | os.X_OK):
            found.append(
                f"spool: {label} is not writable by this process (uid {os.geteuid()}) ({path}); "
                "give the service user write access"
            )
    return found
