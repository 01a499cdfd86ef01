"""Sending: exactly one delivery per idempotency key, even when the pickup moves files.

A delivery is a set of files with fixed names derived from the key: a notice is
``<stem>.txt``, ``<stem>.json`` (the manifest) and ``<stem>.xml`` (the document); a
staff mail is ``<stem>.eml``. The last name of a set is its *visible marker*: when it
appears, the rest of the set is complete.

Whatever picks the files up (the police's transfer, a mail relay) may move them away
at once, so "the file is there" cannot be what tells a resend that a key was
delivered. The durable record is ``.delivered/<visible name>``, and it is written
*before* anything becomes visible:

1. every file of the set is written as its deterministic temporary twin
   ``.<name>.tmp`` (a dot-file, which every reader ignores), fsynced, and the folder
   fsynced;
2. the marker ``.delivered/<visible name>`` is written and fsynced, and
   ``.delivered/`` fsynced: from here on the key counts as delivered;
3. the twins are renamed to their final names, the visible marker last, and the
   folder fsynced.

A resend (the outbox retries a send whose receipt a crash lost) then decides by what
it finds:

* no marker: nothing was ever visible, so deliver (the twins are overwritten);
* marker and twins: the sender died between 2 and 3; finish the renames, which is
  this key's one delivery (``duplicate=False``);
* marker, no twins: delivered before, and perhaps already taken away; answer with
  the earlier receipt, ``duplicate=True``.

Because the twins' names are derived from the key, a resend finds them without any
state beyond the files. ``sweep`` does step 3 at start-up for sets whose sender died,
and removes old twins that never got a marker.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from pathlib import Path

from gateway.ports import Clock, OutboundMessage, PermanentError, Receipt

from . import formats
from .files import (
    exists,
    fsync_dir,
    remove_quietly,
    safe_name,
    temporary_twin,
    translating,
    write_file,
)

log = logging.getLogger(__name__)

_NOTICE_SUFFIXES = (".txt", ".json", ".xml")  # the order of the renames: visible marker last
_MAIL_SUFFIXES = (".eml",)


@dataclass(frozen=True)
class _Folder:
    path: Path
    label: str
    suffixes: tuple[str, ...]

    def names(self, stem: str) -> list[str]:
        return [f"{stem}{suffix}" for suffix in self.suffixes]


class Outbox:
    """Writes notices to outbox/ and staff mail to mail/ under the marker protocol."""

    def __init__(
        self,
        *,
        channel: str,
        outbox: Path,
        mail: Path,
        delivered: Path,
        clock: Clock,
        sender_address: str,
        guard: Callable[[Path, str], None],
        monotonic: Callable[[], float],
    ) -> None:
        self._channel = channel
        self._monotonic = monotonic
        # unmarked temporary files seen so far: (folder, name) -> (identity, first seen)
        self._stale: dict[tuple[str, str], tuple[tuple[int, int, int], float]] = {}
        self._notices = _Folder(outbox, "outbox", _NOTICE_SUFFIXES)
        self._mail = _Folder(mail, "mail", _MAIL_SUFFIXES)
        self._delivered = delivered
        self._clock = clock
        self._sender_address = sender_address
        self._guard = guard

    def send(self, message: OutboundMessage) -> Receipt:
        if not message.key:
            raise PermanentError("spool: the outbound message has no idempotency key")
        stem = safe_name(message.key)
        build: Callable[[datetime], list[bytes]]
        if message.kind == "notice":
            folder, build = self._notices, partial(self._notice_files, message, stem)
        elif message.kind == "mail":
            folder, build = self._mail, partial(self._mail_files, message, stem)
        else:
            raise PermanentError("spool: unknown outbound message kind")
        self._guard(folder.path, folder.label)
        return self._deliver(folder, folder.names(stem), message.key, build)

    @staticmethod
    def _notice_files(message: OutboundMessage, stem: str, now: datetime) -> list[bytes]:
        document = formats.notice_document(message)
        manifest = formats.notice_manifest(message, stem, written_at=now.isoformat())
        return [formats.notice_text(message), manifest, document.data]

    def _mail_files(self, message: OutboundMessage, stem: str, now: datetime) -> list[bytes]:
        return [formats.build_mail(message, stem, sender=self._sender_address, now=now)]

    def _deliver(
        self, folder: _Folder, names: list[str], key: str, build: Callable[[datetime], list[bytes]]
    ) -> Receipt:
        visible = folder.path / names[-1]
        marker = self._delivered / names[-1]
        reference = f"{folder.label}/{names[-1]}"
        with translating("reading", ".delivered"):
            marked = exists(marker)
        if marked:
            with translating("writing", folder.label):
                finished = self._finish(folder.path, names)
            if finished:
                log.info("spool %s: finished the interrupted delivery of %s", self._channel, reference)
            return self._receipt(reference, marker, duplicate=not finished)
        with translating("reading", folder.label):
            legacy = exists(visible)
        now = self._clock.now()
        if legacy:  # delivered by a version that kept no marker: remember it from now on
            with translating("writing", ".delivered"):
                self._mark(marker, key, reference, now)
            return self._receipt(reference, marker, duplicate=True)
        contents = build(now)  # PermanentError for an invalid message, before any file
        twins = [temporary_twin(folder.path / name) for name in names]
        try:
            with translating("writing", folder.label):
                for twin, data in zip(twins, contents, strict=True):
                    write_file(twin, [data])
                fsync_dir(folder.path)
            with translating("writing", ".delivered"):
                self._mark(marker, key, reference, now)
        except BaseException:
            remove_quietly(marker)  # a marker may exist only beside complete twins
            for twin in twins:
                remove_quietly(twin)
            raise
        # The key is delivered from here on: a failure now leaves the twins for a resend.
        with translating("writing", folder.label):
            self._finish(folder.path, names)
        return Receipt(channel=self._channel, reference=reference, delivered_at=now, duplicate=False)

    def _mark(self, marker: Path, key: str, reference: str, now: datetime) -> None:
        record = {"key": key, "reference": reference, "delivered_at": now.isoformat()}
        write_file(marker, [json.dumps(record).encode("utf-8")])
        fsync_dir(marker.parent)

    @staticmethod
    def _finish(folder: Path, names: Sequence[str]) -> bool:
        """Rename the twins of a marked set into place, visible marker last.

        True if this made the set visible; False if its visible twin was already gone
        (renamed before: delivered). A twin missing in the middle was renamed by an
        earlier attempt that died before the next one.
        """
        pairs = [(temporary_twin(folder / name), folder / name) for name in names]
        if not exists(pairs[-1][0]):
            leftovers = [twin for twin, _ in pairs[:-1] if exists(twin)]
            for twin in leftovers:
                os.unlink(twin)
            if leftovers:
                fsync_dir(folder)
            return False
        for twin, final in pairs:
            try:
                os.replace(twin, final)
            except FileNotFoundError:
                continue
        fsync_dir(folder)
        return True

    def _receipt(self, reference: str, marker: Path, *, duplicate: bool) -> Receipt:
        """The receipt of an earlier delivery: its time is read back from the marker."""
        if duplicate:
            log.info("spool %s: %s was delivered before; not writing it again", self._channel, reference)
        delivered_at = self._clock.now()
        try:
            with open(marker, "rb") as handle:
                recorded = json.loads(handle.read(4096)).get("delivered_at")
            if isinstance(recorded, str):
                delivered_at = datetime.fromisoformat(recorded)
        except (OSError, ValueError, AttributeError):
            pass  # an empty marker of an older version, or none (a legacy file): now will do
        return Receipt(
            channel=self._channel, reference=reference, delivered_at=delivered_at, duplicate=duplicate
        )

    def sweep(self, older_than: float) -> tuple[int, int]:
        """Finish marked sets a killed sender left, remove unmarked twins older than ``older_than``.

        Returns (sets finished, files removed). Twins without a marker are left while
        young: another instance sharing the folder may be writing them right now.
        """
        finished = removed = 0
        for folder in (self._notices, self._mail):
            try:
                entries = [e.name for e in os.scandir(folder.path)]
            except OSError:
                continue
            stems: set[str] = set()
            for name in entries:
                if not (name.startswith(".") and name.endswith(".tmp")):
                    continue
                stem, suffix = os.path.splitext(name[1:-4])
                if suffix in folder.suffixes:
                    stems.add(stem)
            marked: set[str] = set()
            for stem in sorted(stems):
                names = folder.names(stem)
                try:
                    if not exists(self._delivered / names[-1]):
                        continue
                    marked.update(f".{name}.tmp" for name in names)
                    if self._finish(folder.path, names):
                        finished += 1
                except OSError:
                    log.warning("spool %s: could not finish an interrupted delivery", self._channel)
            removed += self._remove_old_twins(folder.path, older_than, keep=marked)
        return finished, removed

    def _remove_old_twins(self, folder: Path, older_than: float, *, keep: set[str]) -> int:
        """Remove dot ``.tmp`` files unchanged for ``older_than`` seconds, except twins of
        marked sets.

        Age is measured by the monotonic clock between sweeps, never by comparing a
        file's mtime with the wall clock: after the clock steps forward, a write that
        another instance has in progress would otherwise look old and be removed.
        """
        removed = 0
        now = self._monotonic()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            return 0
        seen: set[tuple[str, str]] = set()
        for entry in entries:
            if entry.name in keep or not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                continue
            key = (str(folder), entry.name)
            try:
                info = entry.stat(follow_symlinks=False)
                identity = (info.st_ino, info.st_size, info.st_mtime_ns)
                earlier = self._stale.get(key)
                if earlier is None or earlier[0] != identity:
                    self._stale[key] = (identity, now)
                    seen.add(key)
                elif now - earlier[1] >= older_than:
                    os.unlink(entry.path)
                    removed += 1
                    self._stale.pop(key, None)
                else:
                    seen.add(key)
            except OSError:
                log.debug("spool: could not remove a temporary file")
        for key in [k for k in self._stale if k[0] == str(folder) and k not in seen]:
            del self._stale[key]
        return removed
