"""The spool channel: a folder in, a folder out.

This is the embedded default channel (no outside service needed), the demo's channel
and the fake the tests use, so it behaves exactly like a real one: at-least-once in,
exactly-once effect out, and only ``TransientError`` / ``PermanentError`` across the
seam. ``docs/spool.md`` is the guide for the other side (droppers and pickups).

Layout under ``root`` (the root itself must exist; a missing root is a configuration
or mount problem, not something to paper over by creating an empty tree)::

    inbox/       orders and mail dropped here: ``*.xml`` (a bare order) or ``*.eml``
    outbox/      notices to the police: ``<stem>.txt``, ``<stem>.json``, then ``<stem>.xml``
    mail/        staff mail: ``<stem>.eml``
    processed/   acknowledged input, only with ``keep_processed=True``
    rejected/    oversized input and refused hard links, kept for the operator
    .delivered/  one marker per delivered key, so a resend never delivers twice

One concept per module: ``files`` (durable writes, names, errno translation),
``inbox`` (polling, settling, acknowledging), ``outbox`` (the delivery protocol),
``formats`` (what outgoing files contain), ``health`` (folder checks),
``retention`` (purging what the spool keeps).
This module composes them into the one object the registry builds.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path

from gateway.ports import Clock, CursorStore, OutboundMessage, PermanentError, RawMessage, Receipt

from . import retention
from .files import ensure_dir, safe_name, translating
from .health import RateLimitedLog, problems, refuse_world_writable
from .inbox import Inbox, drop_file
from .outbox import Outbox

__all__ = ["DEFAULT_SETTLE_SECONDS", "SpoolChannel", "drop_file", "safe_name"]

log = logging.getLogger(__name__)

DEFAULT_SETTLE_SECONDS = 2.0
# The clock of settling and of log rate limits: it never steps. Not a constructor
# option, because every option is a configuration key; tests replace it here.
monotonic: Callable[[], float] = time.monotonic


class SpoolChannel:
    """A folder in (inbox/) and a folder out (outbox/ for notices, mail/ for staff).

    Implements both ``InboundChannel`` and ``OutboundChannel``. The idempotency key of
    an outbound message becomes its file name, and ``.delivered/`` remembers it, so a
    second send of the same key answers with a duplicate receipt instead of writing
    again, even after the pickup moved the files away.

    ``settle_seconds``: how long an inbox file must stay unchanged (by the monotonic
    clock) before it is read; 0 takes files at first sight (for droppers that always
    rename into place).
    """

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        clock: Clock,
        sender_address: str = "russak-gateway@localhost",
        keep_processed: bool = False,
        settle_seconds: float = DEFAULT_SETTLE_SECONDS,
        max_bytes: int = 10_485_760,
    ) -> None:
        if max_bytes < 1:
            raise ValueError("max_bytes must be positive")
        if settle_seconds < 0:
            raise ValueError("settle_seconds must not be negative")
        self.name = name
        self.root = Path(root)
        self.inbox = self.root / "inbox"
        self.outbox = self.root / "outbox"
        self.mail = self.root / "mail"
        self.processed = self.root / "processed"
        self.rejected = self.root / "rejected"
        self.delivered = self.root / ".delivered"
        self._keep_processed = keep_processed
        ticks = monotonic  # looked up now, so a test can replace the module's clock
        self._warn = RateLimitedLog(ticks)
        with translating("opening", "the spool root"):
            root_info = os.stat(self.root)
        if not stat.S_ISDIR(root_info.st_mode):
            raise PermanentError("spool: the spool root is not a directory")
        folders = [self.inbox, self.outbox, self.mail, self.delivered]
        if keep_processed:
            folders.append(self.processed)
        for folder in folders:
            with translating("creating", folder.name):
                ensure_dir(folder)
        self._in = Inbox(
            channel=name,
            inbox=self.inbox,
            processed=self.processed,
            rejected=self.rejected,
            clock=clock,
            monotonic=ticks,
            settle_seconds=settle_seconds,
            max_bytes=max_bytes,
            keep_processed=keep_processed,
            guard=self._guard,
        )
        self._out = Outbox(
            channel=name,
            outbox=self.outbox,
            mail=self.mail,
            delivered=self.delivered,
            clock=clock,
            sender_address=sender_address,
            guard=self._guard,
            monotonic=ticks,
        )
        self.sweep_temporary()

    def _guard(self, folder: Path, label: str) -> None:
        """Refuse (PermanentError, warning at most once a minute) a world-writable folder."""
        folders = [(self.root, "the spool root"), (folder, f"{label}/")]
        if folder in (self.outbox, self.mail):
            folders.append((self.delivered, ".delivered/"))
        refuse_world_writable(folders, self._warn)

    # -- inbound -------------------------------------------------------------------

    def poll(self, cursor: CursorStore) -> Iterator[RawMessage]:
        """Yield the settled files waiting in inbox/, oldest first, each read when asked.

        The cursor is not used: the folder itself is the position, and the content
        hash makes a re-delivery recognisable.
        """
        del cursor
        self._guard(self.inbox, "inbox")
        self.sweep_temporary()  # stale temporary files age across polls (monotonic clock)
        yield from self._in.poll()

    def acknowledge(self, message: RawMessage) -> None:
        """Remove a committed file from inbox/ (delete, or keep in processed/ or rejected/)."""
        self._in.acknowledge(message)

    # -- outbound ------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> Receipt:
        """Write a notice to outbox/ or a mail to mail/, exactly once per idempotency key."""
        return self._out.send(message)

    # -- operations ----------------------------------------------------------------

    def check(self) -> list[str]:
        """Human-readable problems of the spool folders (empty when all is well).

        Missing folders, folders that are not directories, world-writable folders and
        folders this process cannot write: what ``russak doctor`` shows.
        """
        return problems(
            [
                (self.root, "the spool root", True),
                (self.inbox, "inbox/", True),
                (self.outbox, "outbox/", True),
                (self.mail, "mail/", True),
                (self.delivered, ".delivered/", True),
                (self.processed, "processed/", self._keep_processed),
                (self.rejected, "rejected/", False),
            ]
        )

    def purge(self, before: datetime) -> int:
        """Delete files kept in processed/ and rejected/ before ``before``; the count.

        The time is each file's mtime, which the gateway set from its clock when it
        re-created the file there. The core calls this with now - retention_days.
        """
        removed = retention.purge([(self.processed, "processed"), (self.rejected, "rejected")], before)
        if removed:
            log.info("spool %s: retention removed %d kept file(s)", self.name, removed)
        return removed

    def sweep_temporary(self, older_than: float = 300.0) -> int:
        """Finish deliveries a killed sender left half done; remove stale temporary files.

        A set whose marker is in ``.delivered/`` is renamed into place (it counts as
        delivered); temporary files without a marker are removed once they have stayed
        unchanged for ``older_than`` seconds by the monotonic clock (seen at start and
        on each poll), so a write in progress by another instance sharing the folder is
        left alone even after the wall clock steps. Returns the number of files removed.
        """
        finished, removed = self._out.sweep(older_than)
        if finished:
            log.info("spool %s: finished %d interrupted delivery(ies)", self.name, finished)
        if removed:
            log.info(
                "spool %s: removed %d temporary file(s) left by an interrupted write", self.name, removed
            )
        return removed
