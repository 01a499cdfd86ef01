"""Personal data protection: field encryption at rest, keyed hashing, log redaction.

The gateway holds criminal-case data about named people, so identity numbers, names
and contact details are encrypted in the database with keys that live outside it, two
orders naming the same person are matched by a keyed hash instead of by decrypting,
and nothing shaped like an identity number reaches a log line.

Key file (text; blank lines and ``#`` comments ignored)::

    russak-key-1:<urlsafe base64 of 32 random bytes>    <- newest: encrypts new data
    russak-key-1:<...>                                   <- older: still decrypts
    russak-key-1:<...>                                   <- original: also keys the hash

Rotation prepends a line (``rotate_key_file``). Every key decrypts, the first one
encrypts, and the identity hash is keyed from the last line, which is never rotated
out, so stored hashes keep matching. Each file key is stretched with HKDF-SHA256 into
separate Fernet and HMAC keys (different ``info``), so neither use weakens the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import logging
import os
import re
import secrets
import stat
import sys
import types
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.engine import Dialect
from sqlalchemy.types import LargeBinary, TypeDecorator

__all__ = [
    "Cipher",
    "DecryptionError",
    "EncryptedBytes",
    "EncryptedText",
    "JournalFormatter",
    "KeyFileError",
    "RedactingFilter",
    "RedactingFormatter",
    "active_cipher",
    "configure_logging",
    "generate_key_file",
    "install_cipher",
    "load_key_file",
    "new_key_line",
    "redact",
    "rotate_key_file",
]

log = logging.getLogger(__name__)

_KEY_PREFIX = "russak-key-1:"
_KEY_BYTES = 32
_MAX_KEY_FILE = 64 * 1024
_FERNET_INFO = b"russak-gateway field encryption v1"
_HASH_INFO = b"russak-gateway identity hash v1"
_KEY_FILE_HEADER = (
    "# russak-gateway encryption keys. Keep secret, keep a backup: without this file\n"
    "# the stored personal data cannot be read.\n"
    "# The first key encrypts new data; every key decrypts. Rotate by adding a new\n"
    "# key at the top. Never remove the last key: it keys the identity hash.\n"
)


class KeyFileError(Exception):
    """The key file is missing, unreadable, malformed or too open.

    Messages name the file and the problem, never any key material.
    """


class DecryptionError(Exception):
    """A stored value could not be decrypted with any key in the key file."""


# --- keys and the cipher -----------------------------------------------------------


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


class Cipher:
    """Encrypts with the first key, decrypts with any, hashes with the last.

    Tokens are Fernet tokens (AES-128-CBC + HMAC-SHA256, with a timestamp), so they
    are authenticated: a tampered or foreign value fails loudly instead of decrypting
    to garbage. Encryption is randomised, so equal inputs give different tokens; use
    ``keyed_hash`` to look things up.
    """

    def __init__(self, master_keys: Sequence[bytes]) -> None:
        if not master_keys:
            raise ValueError("at least one key is needed")
        if any(len(key) != _KEY_BYTES for key in master_keys):
            raise ValueError(f"every key must be {_KEY_BYTES} bytes")
        self._fernet = MultiFernet(
            [Fernet(base64.urlsafe_b64encode(_derive(k, _FERNET_INFO))) for k in master_keys]
        )
        self._hash_key = _derive(master_keys[-1], _HASH_INFO)
        self._key_count = len(master_keys)

    def __repr__(self) -> str:
        return f"<Cipher with {self._key_count} key(s)>"

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise DecryptionError("stored value cannot be decrypted with any key in the key file") from None

    def encrypt_text(self, text: str) -> bytes:
        return self.encrypt(text.encode("utf-8"))

    def decrypt_text(self, token: bytes) -> str:
        return self.decrypt(token).decode("utf-8")

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` under the newest key (for re-keying stored data)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise DecryptionError("stored value cannot be decrypted with any key in the key file") from None

    def keyed_hash(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` with all whitespace removed.

        Lets intake see that two orders name the same person without decrypting
        anything, while the hash is useless to anyone without the key file (a plain
        hash of an 11-digit number is reversed by brute force in seconds).
        """
        normalised = "".join(value.split()).encode("utf-8")
        return hmac.new(self._hash_key, normalised, hashlib.sha256).hexdigest()


# --- key file ------------------------------------------------------------------------


def new_key_line() -> str:
    """One fresh key line for a key file (32 random bytes from the OS)."""
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(_KEY_BYTES)).decode("ascii")
    return _KEY_PREFIX + encoded


def _parse_keys(path: Path, text: str) -> list[bytes]:
    keys: list[bytes] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not line.startswith(_KEY_PREFIX):
            raise KeyFileError(f"{path}: line {number} is not a {_KEY_PREFIX}… key line")
        encoded = line[len(_KEY_PREFIX) :]
        encoded += "=" * (-len(encoded) % 4)
        try:
            key = base64.b64decode(encoded, altchars=b"-_", validate=True)
        except (binascii.Error, ValueError):
            raise KeyFileError(f"{path}: line {number} is not valid base64") from None
        if len(key) != _KEY_BYTES:
            raise KeyFileError(f"{path}: line {number} holds {len(key)} bytes, expected {_KEY_BYTES}")
        keys.append(key)
    if not keys:
        raise KeyFileError(f"{path}: the key file contains no keys")
    return keys


def _read_key_file(path: Path) -> tuple[str, os.stat_result]:
    """Open once and check the very file that is read (no check-then-open race)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file not found") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot open key file ({exc.strerror})") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KeyFileError(f"{path}: key file is not a regular file")
        if info.st_mode & 0o007:
            raise KeyFileError(
                f"{path}: key file is accessible by other users "
                f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 (or 640)"
            )
        chunks: list[bytes] = []
        size = 0
        while size <= _MAX_KEY_FILE:
            chunk = os.read(fd, _MAX_KEY_FILE + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file ({exc.strerror})") from None
    finally:
        os.close(fd)
    if len(data) > _MAX_KEY_FILE:
        raise KeyFileError(f"{path}: key file is too large to be a key file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise KeyFileError(f"{path}: key file is not UTF-8 text") from None
    return text, info


def load_key_file(path: Path) -> Cipher:
    """Read and check the key file and build the cipher from it.

    Refused when "other" has any permission: the file then leaks every person's data
    to every local account. Group access is allowed because systemd credentials and
    service groups need it.
    """
    text, _ = _read_key_file(path)
    keys = _parse_keys(path, text)
    log.debug("loaded encryption key file with %d key(s)", len(keys))
    return Cipher(keys)


def _write_new_file(path: Path, content: str, mode: int) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise KeyFileError(f"{path}: already exists; refusing to overwrite a key file") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot create key file ({exc.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        path.unlink(missing_ok=True)
        raise KeyFileError(f"{path}: cannot write key file ({exc.strerror})") from None


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def generate_key_file(path: Path) -> None:
    """Create a new key file with one key, mode 0600; never overwrites anything.

    Overwriting a key file would make every stored value unreadable, so an existing
    file is an error even if it looks empty.
    """
    _write_new_file(path, _KEY_FILE_HEADER + new_key_line() + "\n", 0o600)
    _fsync_dir(path.parent)
    log.info("created a new encryption key file")


def rotate_key_file(path: Path) -> None:
    """Put a fresh key at the top of an existing key file, atomically.

    The old file is checked first and replaced in one rename, keeping its mode and
    owner, so a crash leaves either the old or the new file and never half of one.
    Stored data stays readable (old keys still decrypt); ``Cipher.rotate`` re-encrypts
    it under the new key when wanted.
    """
    text, info = _read_key_file(path)
    _parse_keys(path, text)
    lines = text.splitlines(keepends=True)
    insert_at = 0
    while insert_at < len(lines) and lines[insert_at].lstrip().startswith("#"):
        insert_at += 1
    head = lines[:insert_at]
    body = "".join(lines[insert_at:])
    if body and not body.endswith("\n"):
        body += "\n"
    content = "".join(head) + new_key_line() + "\n" + body
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    _write_new_file(temporary, content, stat.S_IMODE(info.st_mode) & 0o770)
    try:
        if (info.st_uid, info.st_gid) != (os.getuid(), os.getgid()):
            os.chown(temporary, info.st_uid, info.st_gid)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(f"{path}: cannot replace key file ({exc.strerror})") from None
    _fsync_dir(path.parent)
    log.info("added a new encryption key to the key file")


# --- the process-wide cipher and SQLAlchemy column types -----------------------------

_active: Cipher | None = None


def install_cipher(cipher: Cipher | None) -> None:
    """Make ``cipher`` the one the column types use (``None`` uninstalls it)."""
    global _active
    _active = cipher


def active_cipher() -> Cipher:
    if _active is None:
        raise RuntimeError("no encryption key loaded")
    return _active


class EncryptedText(TypeDecorator[str]):
    """A text column stored as a Fernet token; ``None`` stays NULL.

    The token is random, so ``column == value`` never matches: filter on a
    ``keyed_hash`` column instead.
    """

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, str):
            raise TypeError(f"EncryptedText takes str, not {type(value).__name__}")
        return active_cipher().encrypt_text(value)

    def process_result_value(self, value: Any | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return active_cipher().decrypt_text(bytes(value))


class EncryptedBytes(TypeDecorator[bytes]):
    """A binary column (an order as received, a document) stored as a Fernet token."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: bytes | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        if not isinstance(value, bytes | bytearray | memoryview):
            raise TypeError(f"EncryptedBytes takes bytes, not {type(value).__name__}")
        return active_cipher().encrypt(bytes(value))

    def process_result_value(self, value: Any | None, dialect: Dialect) -> bytes | None:
        if value is None:
            return None
        return active_cipher().decrypt(bytes(value))


# --- log redaction -------------------------------------------------------------------

_MASK = "*" * 11
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# Six digits, an optional separator (space, no-break space, dot, hyphen), five digits,
# not inside a longer digit run. UUIDs are matched first and kept whole, because their
# hex groups can hold an 11-digit run next to a letter.
_SENSITIVE = re.compile(rf"(?P<uuid>{_UUID})|(?<!\d)\d{{6}}[ \u00a0.\-]?\d{{5}}(?!\d)")


def _mask(match: re.Match[str]) -> str:
    return match[0] if match["uuid"] else _MASK


def redact(text: str) -> str:
    """Mask everything shaped like an identity number, valid or not.

    Any 11-digit run is masked, not only numbers that pass the check digits: a typo'd
    identity number is still personal data. Organisation numbers (9 digits), dates,
    case numbers such as RUS-2026-0001 and UUIDs are left readable.
    """
    return _SENSITIVE.sub(_mask, text)


_PLAIN_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Handler filter that bakes the message and redacts it, tracebacks included.

    The record's arguments are merged into the message first, because the identity
    number is usually an argument, not part of the format string.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!s} [log arguments could not be formatted]"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


class RedactingFormatter(logging.Formatter):
    """Formatter whose every output (message, traceback, stack) is redacted.

    Belt and braces with ``RedactingFilter``: this catches whatever a filter cannot
    see, such as text added by the format string itself.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, types.TracebackType | None] | tuple[None, None, None],
    ) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(RedactingFormatter):
    """Prefix every line with ``<N>`` so journald records the syslog priority.

    journald splits a stream into one entry per line, so a traceback's continuation
    lines carry the prefix too; otherwise they would be logged at the default level.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


_NOISY_LOGGERS = (
    "apscheduler.executors",
    "apscheduler.scheduler",
    "alembic",
    "urllib3",
    "msal",
    "exchangelib",
)
_handler: logging.Handler | None = None


def _stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd set up (JOURNAL_STREAM=dev:ino).

    The variable is inherited by child processes whose stderr goes elsewhere, so it
    is compared with stderr itself, as systemd documents.
    """
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":", 1))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now, not what it was at set-up, so a
    command run in-process (tests, the demo) never logs into a closed stream."""

    @property  # type: ignore[override]
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str = "INFO") -> None:
    """Install the one stderr handler, redacting, with journald levels under systemd.

    Called once by the CLI entry point; calling again replaces the earlier handler.
    """
    levelno = logging.getLevelNamesMapping().get(level.upper())
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}")
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = _StderrHandler()
    if _stderr_is_journal():
        handler.setFormatter(JournalFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    # "job skipped: maximum number of running instances reached" only means a step
    # was still running when its next turn came (coalesce handles it); not news at 3 a.m.
    logging.getLogger("apscheduler.scheduler").setLevel(max(levelno, logging.ERROR))
    logging.captureWarnings(True)
    _handler = handler
