"""Files on the spool volume: durable writes, safe names, and errno translation.

Everything the spool puts on disk goes through here, so three promises hold in one
place:

* **Durable and untorn.** Data is written with ``os.write`` in a loop, fsynced, and
  only then given its final name; the folder is fsynced after every rename or unlink,
  so a crash or a power cut leaves the old state or the new one.
* **Bounded, safe names.** Whoever drops a file into inbox/ chooses its name. Every
  name the gateway derives from one (in processed/, rejected/, and for temporary
  files) is at most ``NAME_BUDGET`` characters of ``[A-Za-z0-9._-]``, so a name near
  NAME_MAX can never make a rename fail with ENAMETOOLONG on every poll.
* **Only the seam's two errors, naming the folder, never the file.** File names may
  carry personal data (senders do write identity numbers into them), so a message
  names the spool folder (``outbox/``) and the errno, and the OSError travelling
  along as ``__cause__`` has its file names scrubbed.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

from gateway.ports import ChannelError, PermanentError, TransientError

log = logging.getLogger(__name__)

DIR_MODE = 0o700
FILE_MODE = 0o600
NAME_BUDGET = 120  # every derived name, so its ".<name>.tmp" twin is far below NAME_MAX (255)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_SAFE_PREFIX = 100  # the readable part of a derived name
_CHUNK = 1 << 20
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Storage full: frees up when someone makes room, so retry later.
_FULL = {errno.ENOSPC: "", errno.EDQUOT: " or raise the quota"}
# Conditions that may clear up on their own (I/O hiccup, descriptor limits, NFS).
_TRANSIENT_ERRNOS = frozenset(
    {
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


def errno_name(code: int | None) -> str:
    return errno.errorcode.get(code, "unknown error") if code is not None else "unknown error"


def channel_error(exc: OSError, action: str, folder: str) -> ChannelError:
    """Translate an OSError met while ``action`` (e.g. "writing") ``folder`` (e.g. "outbox").

    Storage full (ENOSPC, EDQUOT) is transient and says what to do; a read-only volume
    or a permission problem is permanent and says so; other known passing conditions
    are transient; anything else is permanent, so staff are alerted rather than the
    gateway retrying silently forever.
    """
    exc.filename = None
    exc.filename2 = None
    code = exc.errno
    name = errno_name(code)
    place = f"{folder}/"
    if code in _FULL:
        return TransientError(
            f"spool: storage full {action} {place} ({name}); free space on the spool volume{_FULL[code]}"
        )
    if code == errno.EROFS:
        return PermanentError(
            f"spool: cannot write {place} ({name}): the spool volume is mounted read-only; remount it "
            "read-write"
        )
    if code in (errno.EACCES, errno.EPERM):
        return PermanentError(
            f"spool: permission denied {action} {place} ({name}); give the service user read and "
            "write access to the folder"
        )
    text = f"spool: {action} {place} failed ({name})"
    if code in _TRANSIENT_ERRNOS:
        return TransientError(text)
    return PermanentError(text)


@contextmanager
def translating(action: str, folder: str) -> Iterator[None]:
    """Let only ``TransientError`` / ``PermanentError`` out of the block."""
    try:
        yield
    except OSError as exc:
        raise channel_error(exc, action, folder) from exc


# -- names -------------------------------------------------------------------------


def _short_hash(text: str, length: int = 10) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:length]


def _cleaned(text: str, limit: int = _SAFE_PREFIX) -> str:
    cleaned = _UNSAFE.sub("_", text)[:limit]
    return "_" + cleaned[1:] if cleaned.startswith((".", "-")) else cleaned


def safe_name(key: str) -> str:
    """The file name stem for an idempotency key.

    Characters outside ``[A-Za-z0-9._-]`` become ``_`` and a short hash of the whole
    key is appended, so two different keys never share a file even when they clean up
    to the same text. The readable part is capped and never starts with a dot (dot
    files are temporary by convention here).
    """
    cleaned = _UNSAFE.sub("_", key)[:_SAFE_PREFIX]
    if cleaned.startswith("."):
        cleaned = "_" + cleaned[1:]
    return f"{cleaned}-{_short_hash(key)}"  # unchanged since the first version: markers rely on it


def kept_names(filename: str, tag: str) -> list[str]:
    """Names to keep an inbox file under in processed/ or rejected/, best first.

    A short, already safe name is kept as it is (operators recognise it); anything
    else is cleaned and bounded with a hash of the original name, so two long names
    that clean up alike still differ. The second candidate adds ``tag`` (a hash of
    the content), for a different file that arrived under the same name.
    """
    stem, suffix = os.path.splitext(filename)
    if _UNSAFE.search(suffix) or len(suffix) > 8:
        stem, suffix = filename, ""
    plain = len(filename) <= _SAFE_PREFIX and not _UNSAFE.search(filename) and filename[:1] not in ".-"
    if not plain:
        stem = f"{_cleaned(stem, 80)}-{_short_hash(filename)}"
    return [f"{stem}{suffix}", f"{stem}-{tag[:12]}{suffix}"]


def temporary_twin(path: Path) -> Path:
    """The deterministic temporary name of ``path``: a dot-file every reader ignores."""
    return path.with_name(f".{path.name}.tmp")


def is_plain_name(name: str) -> bool:
    return bool(name) and name not in {".", ".."} and "/" not in name and "\0" not in name


def inbox_kind(name: str) -> Literal["xml", "email"] | None:
    """What an inbox file is by its name, or None when it must be left alone."""
    lower = name.lower()
    if name.startswith(".") or lower.endswith((".tmp", ".part")):
        return None
    if lower.endswith(".xml"):
        return "xml"
    if lower.endswith(".eml"):
        return "email"
    return None


def epoch_ns(when: datetime) -> int:
    """An aware datetime as nanoseconds since the epoch (a file time)."""
    if when.tzinfo is None:
        raise ValueError("an aware datetime is needed")
    return (when - _EPOCH) // timedelta(microseconds=1) * 1000


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


# -- the filesystem ----------------------------------------------------------------


def exists(path: Path) -> bool:
    """Whether anything is at ``path`` (a dangling symlink counts); errors propagate."""
    try:
        os.lstat(path)
    except FileNotFoundError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    """Make a rename, create or unlink in ``path`` durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _FSYNC_DIR_UNSUPPORTED:
            raise
        log.debug("directory fsync not supported here (%s)", errno_name(exc.errno))
    finally:
        os.close(fd)


def ensure_dir(path: Path) -> None:
    """Create a spool folder private to the service; leave an existing one as is.

    An existing folder keeps its mode: an operator may have opened inbox/ to a group
    that drops files there (world-writable folders are refused elsewhere).
    """
    try:
        os.mkdir(path, DIR_MODE)
    except FileExistsError:
        if not stat.S_ISDIR(os.stat(path).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "spool folder is not a directory") from None
        return
    os.chmod(path, DIR_MODE)  # mkdir honours the umask; be exact
    fsync_dir(path.parent)


def remove_quietly(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError:
        log.debug("spool: could not remove a temporary file")


def write_file(path: Path, chunks: Iterable[bytes], *, mtime_ns: int | None = None) -> None:
    """Write ``chunks`` to ``path`` (created or truncated) with mode 0600 and fsync it.

    No rename here: callers give it a dot-file name and decide when it becomes
    visible. ``mtime_ns`` records a time of the gateway's choosing (its clock), which
    retention later reads back.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | os.O_NOFOLLOW
    fd = os.open(path, flags, FILE_MODE)
    try:
        os.fchmod(fd, FILE_MODE)  # exact, whatever the umask or an earlier file's mode
        for chunk in chunks:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view) :]
        if mtime_ns is not None:
            os.utime(fd, ns=(mtime_ns, mtime_ns))
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, chunks: Iterable[bytes], *, mtime_ns: int | None = None) -> None:
    """Write ``path`` so a reader or a crash never sees a partial file.

    The data goes to a randomly named dot-file beside it, is synced and renamed into
    place, and the folder is synced. Used where a repeat is harmless (inbox drops,
    processed/ and rejected/ copies); deliveries use the outbox's marker protocol.
    """
    tmp = path.with_name(f".keep-{secrets.token_hex(8)}.tmp")
    try:
        write_file(tmp, chunks, mtime_ns=mtime_ns)
        os.replace(tmp, path)
    except BaseException:
        remove_quietly(tmp)
        raise
    fsync_dir(path.parent)


def open_regular(path: Path) -> tuple[int, os.stat_result] | None:
    """A read-only descriptor of the regular file at ``path`` and its fstat, or None.

    O_NOFOLLOW and the fstat check mean a file swapped for a symlink or a FIFO between
    a scan and the open is skipped instead of followed or blocked on.
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
    try:
        info = os.fstat(fd)
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        return None
    return fd, info


def read_fd(fd: int, limit: int) -> bytes:
    """Up to ``limit`` bytes from the start of ``fd``."""
    os.lseek(fd, 0, os.SEEK_SET)
    parts: list[bytes] = []
    left = limit
    while left > 0:
        chunk = os.read(fd, min(left, _CHUNK))
        if not chunk:
            break
        parts.append(chunk)
        left -= len(chunk)
    return b"".join(parts)


def stream_fd(fd: int) -> Iterator[bytes]:
    """The whole content of ``fd`` from its start, a chunk at a time."""
    os.lseek(fd, 0, os.SEEK_SET)
    while chunk := os.read(fd, _CHUNK):
        yield chunk


def read_regular(path: Path, limit: int) -> tuple[bytes, os.stat_result] | None:
    """Up to ``limit`` bytes of the regular file at ``path``, or None if it is gone."""
    found = open_regular(path)
    if found is None:
        return None
    fd, info = found
    try:
        return read_fd(fd, limit), info
    finally:
        os.close(fd)
