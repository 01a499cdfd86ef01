"""Hand the heap memory a step freed back to the kernel, so a daemon that runs for years
stays at the size of what it holds, not of its busiest minute.

glibc's ``malloc`` keeps memory that ``free`` gave back for the next request and only
returns the top of the heap, so the daemon's resident size follows the highest
transient need it ever had (a poll of a full inbox, a tick over many open cases), in
pieces it may never need again. The soak (``benchmarks/soak.py --trace-memory``)
showed that: over 3,600 messages the heap in use grew 0.4 MiB while the free memory
glibc kept grew 2.6 MiB. ``malloc_trim(0)`` returns every whole free page, in every
arena, to the kernel (``madvise``). It took 0.1 ms after a poll of 300 orders here (a
walk of glibc's free lists, more on a badly fragmented heap), and runs once after each
scheduled step (``Daemon._guarded``).

On a C library without ``malloc_trim`` (musl, macOS) this does nothing: those
allocators return memory on their own terms, and nothing here depends on it.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _find_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError, TypeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _find_trim()


def available() -> bool:
    """Whether this C library can hand free heap pages back (glibc)."""
    return _TRIM is not None


def release_free_heap() -> bool:
    """Return the heap's whole free pages to the kernel; True when any were returned."""
    if _TRIM is None:
        return False
    return bool(_TRIM(0))
