"""The spool channel: a folder in, a folder out.

This is the embedded default channel (no outside service needed), the demo's channel
and the fake the tests use, so it behaves exactly like a real one: at-least-once in,
exactly-once effect out, and only ``TransientError`` / ``PermanentError`` across the
seam.

Layout under ``root`` (the root itself must exist; a missing root is a configuration
or mount problem, not something to paper over by creating an empty tree)::

    inbox/      orders and mail dropped here: ``*.xml`` (a bare order) or ``*.eml``
    outbox/     notices to the police: ``<key>.txt`` (the text), then ``<key>.xml``
    mail/       staff mail: ``<key>.eml``
    processed/  acknowledged input, only with ``keep_processed=True``
    rejected/   oversized input, kept for the operator

How to drop a file into inbox/: write it under a name that starts with ``.`` (or ends
in ``.tmp`` or ``.part``) and rename it to its final ``*.xml`` / ``*.eml`` name when it
is complete and flushed. Such names are ignored, so a half-written file is never read.
Writers that cannot rename (some SMB or FTP uploads) need ``settle_seconds``: files
modified more recently than that are left for a later poll. ``drop_file`` does it right.
Only regular files directly in inbox/ are read; symlinks and subfolders are ignored,
so a link cannot make the service read files outside the spool.

Readers of outbox/ must treat the ``.xml`` file as the delivery marker: it is written
last, so when it appears the ``.txt`` beside it is complete. Every file is written to
a temporary dot-file in the same folder, flushed, fsynced, renamed into place and the
folder fsynced, so a crash leaves the old state or the new one, never a torn file.

Polling keeps no state between calls: a file's content hash is its external id, so a
file yielded again (crash before the acknowledgement, or the same file dropped twice)
is recognised by intake as a duplicate. Error messages name the operation and the
errno, never a file name: whoever drops a file chooses its name, and it may carry
personal data.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import stat
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import format_datetime
from pathlib import Path
from typing import Literal

from gateway.ports import (
    Attachment,
    ChannelError,
    Clock,
    CursorStore,
    OutboundMessage,
    PermanentError,
    RawMessage,
    Receipt,
    TransientError,
)

__all__ = ["SpoolChannel", "drop_file", "safe_name"]

log = logging.getLogger(__name__)

_DIR_MODE = 0o700
_FILE_MODE = 0o600
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_MAX_SAFE_PREFIX = 100  # keeps every name (and its temporary twin) far below NAME_MAX
_MESSAGE_ID_DOMAIN = "russak-gateway"
# Headers the channel sets itself; a message may not override them.
_RESERVED_HEADERS = frozenset(
    {
        "from",
        "to",
        "subject",
        "date",
        "message-id",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)
# Conditions that may clear up on their own (full disk, quota, I/O hiccup, NFS).
_TRANSIENT_ERRNOS = frozenset(
    {
        errno.ENOSPC,
        errno.EDQUOT,
        errno.EIO,
        errno.EAGAIN,
        errno.EMFILE,
        errno.ENFILE,
        errno.EBUSY,
        errno.EINTR,
        errno.ENOMEM,
        errno.ENOBUFS,
        errno.ETIMEDOUT,
        errno.ESTALE,
    }
)
# Filesystems (some network mounts) that cannot fsync a directory say so with these.
_FSYNC_DIR_UNSUPPORTED = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP})


def _channel_error(exc: OSError, what: str) -> ChannelError:
    """Translate an OSError into one of the seam's two kinds, without any file name.

    Known passing conditions become TransientError; everything else (EACCES, EPERM,
    EROFS, ENOENT of a spool folder, and anything unforeseen) becomes PermanentError,
    so staff are alerted rather than the gateway retrying silently forever. The file
    name is scrubbed from the OSError too, because it travels along as ``__cause__``
    and tracebacks get logged.
    """
    exc.filename = None
    exc.filename2 = None
    code = exc.errno
    name = errno.errorcode.get(code, "unknown error") if code is not None else "unknown error"
    text = f"spool: {what} failed ({name})"
    if code in _TRANSIENT_ERRNOS:
        return TransientError(text)
    return PermanentError(text)


def safe_name(key: str) -> str:
    """The file name stem for an idempotency key.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` and a short hash of the whole
    key is appended, so two different keys never share a file even when they clean up
    to the same text. The readable part is capped and never starts with a dot (dot
    files are temporary by convention here).
    """
    cleaned = _UNSAFE.sub("_", key)[:_MAX_SAFE_PREFIX]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    digest = hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10]
    return f"{cleaned}-{digest}"


def _is_plain_name(name: str) -> bool:
    return bool(name) and name not in {".", ".."} and "/" not in name and "\0" not in name


def _inbox_kind(name: str) -> Literal["xml", "email"] | None:
    """What an inbox file is by its name, or None when it must be left alone."""
    lower = name.lower()
    if name.startswith(".") or lower.endswith((".tmp", ".part")):
        return None
    if lower.endswith(".xml"):
        return "xml"
    if lower.endswith(".eml"):
        return "email"
    return None


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _is_xml(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower().endswith("xml")


def _exists(path: Path) -> bool:
    """Whether anything is at ``path`` (a dangling symlink counts); errors propagate."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_DIR_UNSUPPORTED:
            raise
        log.debug("directory fsync not supported here (%s)", errno.errorcode.get(exc.errno))
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes, *, suffix: str = ".tmp") -> None:
    """Write ``data`` to ``path`` so a reader or a crash never sees a partial file.

    The data goes to a dot-file in the same folder (names a poll ignores), is synced,
    and is renamed into place; the folder is synced so the rename survives power loss.
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{suffix}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), _FILE_MODE)  # exact, whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            log.debug("could not remove a temporary spool file")
        raise
    _fsync_dir(path.parent)


def _read_regular(path: Path, limit: int) -> tuple[bytes, os.stat_result] | None:
    """Up to ``limit`` bytes of the regular file at ``path``, or None if it is gone.

    O_NOFOLLOW and the fstat check mean a file swapped for a symlink or a FIFO between
    the scan and the read is skipped instead of followed or blocked on.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # it became a symlink
            return None
        raise
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            return None
        return handle.read(limit), info


def drop_file(inbox: Path, name: str, data: bytes) -> Path:
    """Put a file into a spool inbox the right way: a dot-file, fsync, then rename.

    For tests, the demo and local tooling. Refuses to replace a file of the same name
    that is still waiting in the inbox (FileExistsError), since that would lose it.
    """
    if not _is_plain_name(name) or _inbox_kind(name) is None:
        raise ValueError("drop_file needs a plain *.xml or *.eml name not starting with a dot")
    target = Path(inbox) / name
    if _exists(target):
        raise FileExistsError(errno.EEXIST, "a file of that name is waiting in the inbox")
    _write_atomic(target, data, suffix=".part")
    return target


class SpoolChannel:
    """A folder in (inbox/) and a folder out (outbox/ for notices, mail/ for staff).

    Implements both ``InboundChannel`` and ``OutboundChannel``. The idempotency key of
    an outbound message becomes its file name, so a second send of the same key finds
    the file and answers with a duplicate receipt instead of writing again.
    """

    def __init__(
        self,
        name: str,
        root: Path,
        *,
        clock: Clock,
        sender_address: str = "russak-gateway@localhost",
        keep_processed: bool = False,
        settle_seconds: float = 0.0,
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
        self._clock = clock
        self._sender_address = sender_address
        self._keep_processed = keep_processed
        self._settle_seconds = settle_seconds
        self._max_bytes = max_bytes
        try:
            root_info = os.stat(self.root)
        except OSError as exc:
            raise _channel_error(exc, "opening the spool root") from exc
        if not stat.S_ISDIR(root_info.st_mode):
            raise PermanentError("spool: the spool root is not a directory")
        self.delivered = self.root / ".delivered"
        folders = [self.inbox, self.outbox, self.mail, self.delivered]
        if keep_processed:
            folders.append(self.processed)
        try:
            for folder in folders:
                self._ensure_dir(folder)
        except OSError as exc:
            raise _channel_error(exc, "creating spool folders") from exc
        self.sweep_temporary()

    def sweep_temporary(self, older_than: float = 300.0) -> int:
        """Remove temporary files a killed writer left in outbox/ and mail/.

        ``_write_atomic`` writes ``.<name>.<hex>.tmp`` and renames it; a SIGKILL
        between the two leaves the temporary file behind (the message itself is sent
        again from the outbox). Only files older than ``older_than`` seconds go, so a
        write in progress by another instance sharing the folder is left alone.
        """
        removed = 0
        cutoff = time.time() - older_than
        for folder in (self.outbox, self.mail):
            try:
                entries = list(os.scandir(folder))
            except OSError:
                continue
            for entry in entries:
                if not (entry.name.startswith(".") and entry.name.endswith(".tmp")):
                    continue
                try:
                    if entry.stat(follow_symlinks=False).st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except OSError:
                    log.debug("spool: could not remove a temporary file")
        if removed:
            log.info(
                "spool %s: removed %d temporary file(s) left by an interrupted write", self.name, removed
            )
        return removed

    def _ensure_dir(self, path: Path) -> None:
        """Create a spool folder private to the service; leave an existing one as is.

        An existing folder keeps its mode: an operator may have opened inbox/ to a
        group that drops files there.
        """
        try:
            os.mkdir(path, _DIR_MODE)
        except FileExistsError:
            if not stat.S_ISDIR(os.stat(path).st_mode):
                raise NotADirectoryError(errno.ENOTDIR, "spool folder is not a directory") from None
            return
        os.chmod(path, _DIR_MODE)  # mkdir honours the umask; be exact
        _fsync_dir(path.parent)

    # -- inbound -------------------------------------------------------------------

    def poll(self, cursor: CursorStore) -> Iterator[RawMessage]:
        """Yield the files waiting in inbox/, oldest first, reading each only when asked.

        The cursor is not used: the folder itself is the position, and the content
        hash makes a re-delivery recognisable.
        """
        del cursor
        for _mtime_ns, filename, kind in self._scan():
            path = self.inbox / filename
            try:
                found = _read_regular(path, self._max_bytes + 1)
            except OSError as exc:
                raise _channel_error(exc, "reading an inbox file") from exc
            if found is None:
                continue  # removed or replaced by something that is not a file
            data, info = found
            metadata = {"filename": filename, "size": str(info.st_size)}
            if len(data) > self._max_bytes:
                metadata["truncated"] = "true"
            yield RawMessage(
                channel=self.name,
                external_id=_digest(data),
                content=data,
                kind=kind,
                received_at=self._clock.now(),
                sender=None,
                metadata=metadata,
            )

    def _scan(self) -> list[tuple[int, str, Literal["xml", "email"]]]:
        """One scandir of inbox/: the candidates, sorted by (mtime, name)."""
        now = time.time()
        found: list[tuple[int, str, Literal["xml", "email"]]] = []
        try:
            with os.scandir(self.inbox) as entries:
                for entry in entries:
                    kind = _inbox_kind(entry.name)
                    if kind is None:
                        continue
                    try:
                        info = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    if not stat.S_ISREG(info.st_mode):
                        continue
                    if self._settle_seconds > 0 and now - info.st_mtime < self._settle_seconds:
                        continue
                    found.append((info.st_mtime_ns, entry.name, kind))
        except OSError as exc:
            raise _channel_error(exc, "scanning the inbox") from exc
        found.sort()
        if found:
            log.debug("spool %s: %d file(s) waiting in the inbox", self.name, len(found))
        return found

    def acknowledge(self, message: RawMessage) -> None:
        """Remove a committed file from inbox/ (delete, or move to processed/ or rejected/).

        Idempotent: a file already gone is fine. A file whose content no longer matches
        the message (someone replaced it) is left alone, since it is a different
        message that has not been processed yet.
        """
        filename = message.metadata.get("filename", "")
        if message.channel != self.name or not _is_plain_name(filename):
            raise PermanentError("spool: the message does not belong to this spool channel")
        try:
            self._acknowledge(message, filename)
        except OSError as exc:
            raise _channel_error(exc, "acknowledging an inbox file") from exc

    def _acknowledge(self, message: RawMessage, filename: str) -> None:
        path = self.inbox / filename
        found = _read_regular(path, self._max_bytes + 1)
        if found is None:
            log.debug("spool %s: %s already gone from the inbox", self.name, message.external_id)
            return
        data, info = found
        if _digest(data) != message.external_id:
            log.warning(
                "spool %s: inbox file of %s was replaced by other content; leaving it",
                self.name,
                message.external_id,
            )
            return
        # The content was checked through our own descriptor; make sure the name still
        # points at that very file before removing it.
        try:
            current = os.lstat(path)
        except FileNotFoundError:
            return
        if (current.st_dev, current.st_ino) != (info.st_dev, info.st_ino):
            log.warning(
                "spool %s: inbox file of %s was swapped while acknowledging; leaving it",
                self.name,
                message.external_id,
            )
            return
        if message.metadata.get("truncated") == "true":
            self._move(path, self.rejected, filename, message.external_id)
        elif self._keep_processed:
            self._move(path, self.processed, filename, message.external_id)
        else:
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            _fsync_dir(self.inbox)

    def _move(self, source: Path, folder: Path, filename: str, external_id: str) -> None:
        """Move ``source`` into ``folder`` without overwriting a different earlier file."""
        self._ensure_dir(folder)
        stem, suffix = os.path.splitext(filename)
        short = external_id.removeprefix("sha256:")[:12]
        for candidate in (filename, f"{stem}-{short}{suffix}"):
            target = folder / candidate
            if not _exists(target):
                os.rename(source, target)
                _fsync_dir(folder)
                _fsync_dir(self.inbox)
                return
            kept = _read_regular(target, self._max_bytes + 1)
            if kept is not None and _digest(kept[0]) == external_id:
                # The same content is already kept there (dropped twice): one copy will do.
                os.unlink(source)
                _fsync_dir(self.inbox)
                return
        log.warning(
            "spool %s: no free name in %s for %s; left in the inbox",
            self.name,
            folder.name,
            external_id,
        )

    # -- outbound ------------------------------------------------------------------

    def send(self, message: OutboundMessage) -> Receipt:
        """Write a notice to outbox/ or a mail to mail/, once per idempotency key."""
        if not message.key:
            raise PermanentError("spool: the outbound message has no idempotency key")
        stem = safe_name(message.key)
        try:
            if message.kind == "notice":
                return self._send_notice(message, stem)
            if message.kind == "mail":
                return self._send_mail(message, stem)
        except OSError as exc:
            raise _channel_error(exc, f"writing a {message.kind}") from exc
        raise PermanentError("spool: unknown outbound message kind")

    def _receipt(self, reference: str, *, duplicate: bool) -> Receipt:
        if duplicate:
            log.info("spool %s: %s was delivered before; not writing it again", self.name, reference)
        return Receipt(
            channel=self.name,
            reference=reference,
            delivered_at=self._clock.now(),
            duplicate=duplicate,
        )

    def _delivered_before(self, marker: Path) -> bool:
        """The file is still there, or the delivery index remembers it.

        Whatever picks files up (the police's transfer, a mail relay) may move them
        away at once; the index under ``.delivered/`` keeps "this key was delivered"
        after that, so a resend after a crash still delivers nothing twice.
        """
        return _exists(marker) or _exists(self.delivered / marker.name)

    def _remember_delivered(self, marker: Path) -> None:
        fd = os.open(self.delivered / marker.name, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, _FILE_MODE)
        os.close(fd)
        _fsync_dir(self.delivered)

    def _send_notice(self, message: OutboundMessage, stem: str) -> Receipt:
        marker = self.outbox / f"{stem}.xml"
        reference = f"outbox/{marker.name}"
        if self._delivered_before(marker):
            return self._receipt(reference, duplicate=True)
        document = next((a for a in message.attachments if _is_xml(a.content_type)), None)
        if document is None:
            raise PermanentError("spool: a notice needs an XML attachment")
        text = f"{message.subject}\n\n{message.body}"
        if not text.endswith("\n"):
            text += "\n"
        _write_atomic(self.outbox / f"{stem}.txt", text.encode("utf-8"))
        _write_atomic(marker, document.data)  # last: its presence means "delivered"
        self._remember_delivered(marker)
        return self._receipt(reference, duplicate=False)

    def _send_mail(self, message: OutboundMessage, stem: str) -> Receipt:
        target = self.mail / f"{stem}.eml"
        reference = f"mail/{target.name}"
        if self._delivered_before(target):
            return self._receipt(reference, duplicate=True)
        if not message.recipients:
            raise PermanentError("spool: a mail needs at least one recipient")
        try:
            data = self._build_mail(message, stem).as_bytes()
        except (ValueError, TypeError, LookupError) as exc:
            # The email library's text may quote header values; keep only the kind.
            raise PermanentError(f"spool: the mail could not be built ({type(exc).__name__})") from None
        _write_atomic(target, data)
        self._remember_delivered(target)
        return self._receipt(reference, duplicate=False)

    def _build_mail(self, message: OutboundMessage, stem: str) -> EmailMessage:
        for header in message.headers:
            if header.strip().lower() in _RESERVED_HEADERS:
                raise PermanentError("spool: a mail header set by the channel was overridden")
        mail = EmailMessage()
        mail["From"] = self._sender_address
        mail["To"] = ", ".join(message.recipients)
        mail["Subject"] = message.subject
        mail["Date"] = format_datetime(self._clock.now())
        # Stable for a key, so a resent mail is recognisably the same message. Dots are
        # replaced because a msg-id's left part may not contain ".." or end in ".".
        mail["Message-ID"] = f"<{stem.replace('.', '_')}@{_MESSAGE_ID_DOMAIN}>"
        for header, value in message.headers.items():
            mail[header] = value
        mail.set_content(message.body, charset="utf-8")
        for attachment in message.attachments:
            _attach(mail, attachment)
        return mail


def _attach(mail: EmailMessage, attachment: Attachment) -> None:
    maintype, _, subtype = attachment.content_type.split(";", 1)[0].strip().lower().partition("/")
    if not maintype or not subtype or maintype == "multipart":
        maintype, subtype = "application", "octet-stream"
    mail.add_attachment(attachment.data, maintype=maintype, subtype=subtype, filename=attachment.filename)
