"""Taking files in: polling inbox/, waiting for files to settle, acknowledging them.

**Settling.** A writer that renames a finished file into place (``drop_file``, or any
dot-file-then-rename upload) is safe at once. A writer that cannot rename (some SMB or
FTP uploads) writes the final name slowly, perhaps keeping it open for minutes, so a
file is taken only when its (size, mtime, ctime, inode, link count) have stayed the
same since a poll at least ``settle_seconds`` ago, measured by the *monotonic* clock.
File times come from the wall clock, which NTP or an operator may step: comparing
them with "now" made new files look as if from the future after a backward step and
left them in the inbox for good. The observations live in memory, one per waiting
file, pruned when the file goes and capped at ``MAX_OBSERVED``; a restart simply
observes again. ``settle_seconds = 0`` means no settling at all: a file is taken at
the first poll that sees it (only for writers that always rename into place).

**Hard links.** A regular file with more than one link may be another name of a file
the service can read (its key, its database) placed by someone who could not read it
themselves. It is never opened: the inbox name is renamed into rejected/ (that moves
the link only) or, if that is not possible, left, and one warning says what to do.

**Acknowledging.** A committed file is deleted, or kept in processed/ (or rejected/
when it was too large) as a *new* file: written by the gateway with mode 0600 and the
gateway clock's time as its mtime, whatever mode and owner the dropper gave it, so
retention (``retention.purge``) reads a time the gateway set. Kept names are bounded and safe
(``kept_names``).

Polling uses no cursor: the folder itself is the position and a file's content hash
is its external id, so a file yielded again (crash before the acknowledgement, or the
same bytes dropped twice) is recognised by intake as a duplicate.
"""

from __future__ import annotations

import errno
import logging
import os
import secrets
import stat
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from gateway.ports import Clock, PermanentError, RawMessage

from .files import (
    digest,
    ensure_dir,
    epoch_ns,
    errno_name,
    exists,
    fsync_dir,
    inbox_kind,
    is_plain_name,
    kept_names,
    open_regular,
    read_fd,
    read_regular,
    stream_fd,
    translating,
    write_atomic,
    write_file,
)
from .health import world_writable

log = logging.getLogger(__name__)

MAX_OBSERVED = 10_000  # files waiting to settle that are remembered at once

Signature = tuple[int, int, int, int, int, int]


def _signature(info: os.stat_result) -> Signature:
    return (info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_dev, info.st_ino, info.st_nlink)


@dataclass(frozen=True)
class _Candidate:
    name: str
    kind: Literal["xml", "email"]
    info: os.stat_result


class Settle:
    """Which files have stayed unchanged for ``seconds`` by the monotonic clock."""

    def __init__(self, seconds: float, limit: int = MAX_OBSERVED) -> None:
        self.seconds = seconds
        self._limit = limit
        self._seen: dict[str, tuple[Signature, float]] = {}
        self._full_logged = False

    def ready(self, name: str, signature: Signature, now: float) -> bool:
        if self.seconds <= 0:
            return True
        earlier = self._seen.get(name)
        if earlier is not None and earlier[0] == signature:
            return now - earlier[1] >= self.seconds
        if earlier is None and len(self._seen) >= self._limit:
            if not self._full_logged:
                log.warning("spool: more than %d files are waiting to settle; the rest wait", self._limit)
                self._full_logged = True
            return False
        self._seen[name] = (signature, now)
        return False

    def forget(self, name: str) -> None:
        self._seen.pop(name, None)

    def prune(self, present: set[str]) -> None:
        for name in [n for n in self._seen if n not in present]:
            del self._seen[name]
        if len(self._seen) < self._limit:
            self._full_logged = False


class Inbox:
    """inbox/ in; processed/ and rejected/ for what the gateway keeps."""

    def __init__(
        self,
        *,
        channel: str,
        inbox: Path,
        processed: Path,
        rejected: Path,
        clock: Clock,
        monotonic: Callable[[], float],
        settle_seconds: float,
        max_bytes: int,
        keep_processed: bool,
        guard: Callable[[Path, str], None],
    ) -> None:
        self._channel = channel
        self._inbox = inbox
        self._processed = processed
        self._rejected = rejected
        self._clock = clock
        self._monotonic = monotonic
        self._settle = Settle(settle_seconds)
        self._max_bytes = max_bytes
        self._keep_processed = keep_processed
        self._guard = guard
        self._refused: set[tuple[str, int, int]] = set()
        self._lock = threading.Lock()

    # -- poll ------------------------------------------------------------------------

    def poll(self) -> Iterator[RawMessage]:
        """Yield the settled files, oldest first, reading each only when asked."""
        for candidate in self._scan():
            with translating("reading", "inbox"):
                data = self._read(candidate)
            if data is None:
                continue  # removed, replaced or changed since the scan
            metadata = {"filename": candidate.name, "size": str(candidate.info.st_size)}
            if len(data) > self._max_bytes:
                metadata["truncated"] = "true"
            yield RawMessage(
                channel=self._channel,
                external_id=digest(data),
                content=data,
                kind=candidate.kind,
                received_at=self._clock.now(),
                sender=None,
                metadata=metadata,
            )

    def _scan(self) -> list[_Candidate]:
        """One scandir of inbox/: the settled candidates, sorted by (mtime, name)."""
        now = self._monotonic()
        ready: list[_Candidate] = []
        linked: list[_Candidate] = []
        present: set[str] = set()
        with translating("scanning", "inbox"), self._lock, os.scandir(self._inbox) as entries:
            for entry in entries:
                kind = inbox_kind(entry.name)
                if kind is None:
                    continue
                try:
                    info = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if not stat.S_ISREG(info.st_mode):
                    continue  # symlinks, folders, FIFOs: never read
                present.add(entry.name)
                if not self._settle.ready(entry.name, _signature(info), now):
                    continue
                (linked if info.st_nlink > 1 else ready).append(_Candidate(entry.name, kind, info))
            self._settle.prune(present)
            self._refused = {r for r in self._refused if r[0] in present}
        for candidate in linked:
            self._refuse_link(candidate)
        ready.sort(key=lambda c: (c.info.st_mtime_ns, c.name))
        if ready:
            log.debug("spool %s: %d file(s) ready in the inbox", self._channel, len(ready))
        return ready

    def _read(self, candidate: _Candidate) -> bytes | None:
        found = open_regular(self._inbox / candidate.name)
        if found is None:
            return None
        fd, info = found
        try:
            if _signature(info)[:5] != _signature(candidate.info)[:5] or info.st_nlink != 1:
                with self._lock:
                    self._settle.forget(candidate.name)  # changed after the scan: settle again
                return None
            return read_fd(fd, self._max_bytes + 1)
        finally:
            os.close(fd)

    def _refuse_link(self, candidate: _Candidate) -> None:
        """Never read a hard-linked file; move the inbox link to rejected/ if possible."""
        info = candidate.info
        token = (candidate.name, info.st_dev, info.st_ino)
        with self._lock:
            if token in self._refused:
                return
            self._refused.add(token)
        tag = digest(candidate.name.encode("utf-8", "surrogateescape")).removeprefix("sha256:")[:10]
        where = self._move_link(candidate.name, tag)
        if where is not None:
            advice = (
                f"moved that link, unread, to rejected/{where}: find out who placed it, then delete it "
                "(that removes only the link)"
            )
        else:
            advice = (
                f"left it in inbox/ (tag {tag}): remove it there with rm (that removes only the link) "
                "and find out who placed it"
            )
        log.warning(
            "spool %s: refused an inbox file with %d hard links: it could be another name of a file "
            "the gateway can read (such as its key), so it was not read; %s. Droppers must write a "
            "new file and rename it into inbox/",
            self._channel,
            info.st_nlink,
            advice,
        )

    def _move_link(self, name: str, tag: str) -> str | None:
        if world_writable(self._rejected, "rejected/") is not None:
            return None
        try:
            ensure_dir(self._rejected)
            target = f"refused-link-{tag}-{secrets.token_hex(4)}{name[-4:].lower()}"  # .xml or .eml
            if exists(self._rejected / target):
                return None
            os.rename(self._inbox / name, self._rejected / target)
            fsync_dir(self._rejected)
            fsync_dir(self._inbox)
        except OSError as exc:
            log.debug("spool %s: could not move a refused link (%s)", self._channel, errno_name(exc.errno))
            return None
        return target

    # -- acknowledge -----------------------------------------------------------------

    def acknowledge(self, message: RawMessage) -> None:
        """Remove a committed file from inbox/ (delete, or keep it in processed/ or rejected/).

        Idempotent: a file already gone is fine. A file whose content no longer matches
        the message (someone replaced it) is left alone, since it is a different
        message that has not been processed yet.
        """
        filename = message.metadata.get("filename", "")
        if message.channel != self._channel or not is_plain_name(filename):
            raise PermanentError("spool: the message does not belong to this spool channel")
        path = self._inbox / filename
        with translating("reading", "inbox"):
            found = open_regular(path)
        if found is None:
            log.debug("spool %s: %s already gone from the inbox", self._channel, message.external_id)
            return
        fd, info = found
        try:
            self._acknowledge(message, path, fd, info)
        finally:
            os.close(fd)

    def _acknowledge(self, message: RawMessage, path: Path, fd: int, info: os.stat_result) -> None:
        with translating("reading", "inbox"):
            data = read_fd(fd, self._max_bytes + 1)
        if digest(data) != message.external_id:
            log.warning(
                "spool %s: inbox file of %s was replaced by other content; leaving it",
                self._channel,
                message.external_id,
            )
            return
        # The content was checked through our own descriptor; make sure the name still
        # points at that very file before removing it.
        with translating("reading", "inbox"):
            try:
                current = os.lstat(path)
            except FileNotFoundError:
                return
        if (current.st_dev, current.st_ino) != (info.st_dev, info.st_ino):
            log.warning(
                "spool %s: inbox file of %s was swapped while acknowledging; leaving it",
                self._channel,
                message.external_id,
            )
            return
        if message.metadata.get("truncated") == "true":
            kept = self._keep(fd, data, self._rejected, "rejected", path.name, message.external_id)
        elif self._keep_processed:
            kept = self._keep(fd, data, self._processed, "processed", path.name, message.external_id)
        else:
            kept = True
        if not kept:
            return
        with translating("removing a file from", "inbox"):
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            fsync_dir(self._inbox)

    def _keep(self, fd: int, data: bytes, folder: Path, label: str, filename: str, external_id: str) -> bool:
        """Re-create the file in ``folder`` as the gateway's own; False if no name is free."""
        self._guard(folder, label)
        tag = external_id.removeprefix("sha256:")
        with translating("writing", label):
            ensure_dir(folder)
            for candidate in kept_names(filename, tag):
                target = folder / candidate
                if not exists(target):
                    whole = len(data) <= self._max_bytes
                    write_atomic(target, [data] if whole else stream_fd(fd), mtime_ns=self._stamp())
                    return True
                earlier = read_regular(target, self._max_bytes + 1)
                if earlier is not None and digest(earlier[0]) == external_id:
                    return True  # the same content is kept there already (dropped twice)
        log.warning(
            "spool %s: no free name in %s/ for %s; left in the inbox", self._channel, label, external_id
        )
        return False

    def _stamp(self) -> int:
        """Now by the gateway's clock: the mtime of kept files."""
        return epoch_ns(self._clock.now())


def drop_file(inbox: Path, name: str, data: bytes) -> Path:
    """Put a file into a spool inbox the right way: a dot-file, fsync, then rename.

    For tests, the demo and local tooling. Refuses to replace a file of the same name
    that is still waiting in the inbox (FileExistsError), since that would lose it.
    The temporary name is short whatever ``name`` is, so a name near NAME_MAX works.
    """
    if not is_plain_name(name) or inbox_kind(name) is None:
        raise ValueError("drop_file needs a plain *.xml or *.eml name not starting with a dot")
    target = Path(inbox) / name
    if exists(target):
        raise FileExistsError(errno.EEXIST, "a file of that name is waiting in the inbox")
    tmp = target.with_name(f".drop-{secrets.token_hex(8)}.part")
    try:
        write_file(tmp, [data])
        os.replace(tmp, target)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            log.debug("could not remove a temporary drop file")
        raise
    fsync_dir(target.parent)
    return target
