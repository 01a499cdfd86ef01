"""The key file: reading it safely, creating it, and rotating it.

Key file (text; blank lines and ``#`` comments ignored)::

    russak-key-1:<urlsafe base64 of 32 random bytes>    <- newest: encrypts and hashes
    russak-key-1:<...>                                   <- older: still decrypts and matches

Rotation prepends a line (``rotate_key_file``); ``russak key reencrypt`` then
rewrites every stored token and identity hash under the new first key, after which
the database needs no older line any more.

The file is opened once and the very descriptor that is read is checked, so nothing
can be swapped between the check and the read. It is refused when anyone but the
owner and the owning group may read it, by mode or by POSIX ACL: it unlocks every
person's criminal-case data.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import secrets
import stat
from pathlib import Path

from gateway.privacy.acl import AclFormatError, extra_access, read_acl
from gateway.privacy.cipher import KEY_BYTES, Cipher

__all__ = ["KeyFileError", "generate_key_file", "load_key_file", "new_key_line", "rotate_key_file"]

log = logging.getLogger(__name__)

_KEY_PREFIX = "russak-key-1:"
_MAX_KEY_FILE = 64 * 1024
_KEY_FILE_HEADER = (
    "# russak-gateway encryption keys. Keep secret, keep a backup: without this file\n"
    "# the stored personal data cannot be read.\n"
    "# The first key encrypts new data and keys the identity hash; every key decrypts.\n"
    "# Rotate with `russak key rotate`, then run `russak key reencrypt`; only after\n"
    "# that has finished may the older keys be removed.\n"
)


class KeyFileError(Exception):
    """The key file is missing, unreadable, malformed or too open.

    Messages name the file and the problem, never any key material.
    """


def new_key_line() -> str:
    """One fresh key line for a key file (32 random bytes from the OS)."""
    encoded = base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode("ascii")
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
        if len(key) != KEY_BYTES:
            raise KeyFileError(f"{path}: line {number} holds {len(key)} bytes, expected {KEY_BYTES}")
        keys.append(key)
    if not keys:
        raise KeyFileError(f"{path}: the key file contains no keys")
    return keys


def _check_access(path: Path, fd: int, info: os.stat_result) -> None:
    """Refuse a key file that anyone beyond its owner and owning group may open.

    Group access is allowed because systemd credentials and service groups need it.
    The ACL is checked as well as the mode: an ACL entry for another user is as open
    as mode 0644 for that user, and ``ls -l`` only hints at it with a ``+``.
    """
    if info.st_mode & 0o007:
        raise KeyFileError(
            f"{path}: key file is accessible by other users "
            f"(mode {stat.S_IMODE(info.st_mode):04o}); run chmod 600 (or 640)"
        )
    try:
        entries = read_acl(fd)
    except AclFormatError as exc:
        raise KeyFileError(
            f"{path}: key file has an ACL that cannot be checked ({exc}); run setfacl -b"
        ) from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read the key file's ACL ({exc.strerror})") from None
    wide = extra_access(entries, owner=info.st_uid, group=info.st_gid, reader=os.geteuid())
    if wide:
        listed = ", ".join(entry.describe() for entry in wide)
        raise KeyFileError(
            f"{path}: key file is accessible by other users through its ACL ({listed}); run setfacl -b"
        )


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
        _check_access(path, fd, info)
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

    Refused when anyone beyond the owner and the owning group has any permission, by
    mode or ACL: the file then leaks every person's data to other local accounts.
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
    The new file passes the same check before the rename: a default ACL on the
    directory would otherwise hand the new key to whoever it names. Stored data stays
    readable and matchable (old keys still decrypt and hash); ``russak key reencrypt``
    then re-keys it under the new key.
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
        _read_key_file(temporary)
        os.replace(temporary, path)
    except KeyFileError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(f"{path}: left unchanged, the rotated copy fails the check: {exc}") from None
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise KeyFileError(f"{path}: cannot replace key file ({exc.strerror})") from None
    _fsync_dir(path.parent)
    log.info("added a new encryption key to the key file")
