"""A CPU-time budget for one parsing step.

The caps in ``xmlcaps`` and ``mail_limits`` are what bound the work: a call into lxml
or the ``email`` package cannot be interrupted halfway. The budget catches whatever
slips past them, so that a message that was expensive to read ends in quarantine with
a reason ("took too long (3.10 s CPU, limit 2 s)") instead of making every poll of its
channel silently slow.

CPU time of the calling thread (``time.thread_time``), not wall time: a machine that
is busy with something else must not quarantine good messages, and the daemon's
other threads must not be charged to this one (``time.process_time`` would count
them too).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["DEFAULT_CPU_BUDGET", "cpu_budget"]

log = logging.getLogger(__name__)

DEFAULT_CPU_BUDGET = 2.0
"""Seconds of CPU for one parse step; a real order or mail needs a few milliseconds."""


@contextmanager
def cpu_budget(
    seconds: float | None,
    error: Callable[[str], Exception],
    what: str,
    clock: Callable[[], float] = time.thread_time,
) -> Iterator[None]:
    """Raise ``error("<what> took too long (N s CPU, limit M s)")`` if the block overran.

    ``seconds=None`` turns the budget off. If the block raised anyway, its own error is
    kept (it says more) and the overrun is only logged.
    """
    if seconds is None:
        yield
        return
    started = clock()
    try:
        yield
    except BaseException:
        used = clock() - started
        if used > seconds:
            log.warning("%s failed after %.2f s CPU (limit %g s)", what, used, seconds)
        raise
    used = clock() - started
    if used > seconds:
        raise error(f"{what} took too long ({used:.2f} s CPU, limit {seconds:g} s)")
