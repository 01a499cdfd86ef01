"""Retention of what the spool keeps: processed/ and rejected/ do not grow forever.

A kept file's time is its mtime, which the gateway itself set (from its clock) when
it re-created the file there, so a dropper's odd timestamps and a simulated clock in
the demo both give the right answer. The core calls ``purge`` with now minus
``retention_days``; deliveries (outbox/, mail/, .delivered/) are not touched here.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path

from .files import epoch_ns, fsync_dir, translating

log = logging.getLogger(__name__)


def purge(folders: Iterable[tuple[Path, str]], before: datetime) -> int:
    """Delete entries (not folders) of ``folders`` whose mtime is before ``before``."""
    cutoff = epoch_ns(before)
    removed = 0
    for folder, label in folders:
        count = 0
        with translating("purging", label):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                try:
                    info = entry.stat(follow_symlinks=False)
                    if stat.S_ISDIR(info.st_mode) or info.st_mtime_ns >= cutoff:
                        continue
                    os.unlink(entry.path)  # a refused hard link: removes only that link
                except FileNotFoundError:
                    continue
                count += 1
            if count:
                fsync_dir(folder)
        removed += count
    return removed
