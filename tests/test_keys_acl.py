"""The key file's POSIX ACL: an entry that lets another user read it is refused, just
as mode 0644 is. ACLs are set on real files, by ``os.setxattr`` with the kernel's
binary format and, where installed, by ``setfacl`` itself.

A filesystem without ACL support skips these tests locally and fails them under
``CI=true``, so CI cannot pass by quietly not testing the check.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from gateway.privacy import Cipher, KeyFileError, generate_key_file, load_key_file, rotate_key_file
from gateway.privacy.acl import (
    GROUP,
    GROUP_OBJ,
    MASK,
    OTHER,
    USER,
    USER_OBJ,
    XATTR,
    AclEntry,
    AclFormatError,
    extra_access,
    parse_acl,
)
from tests.conftest import require_server

NOBODY = 0xFFFFFFFF  # the id of entries that name no one (what setfacl writes)
STRANGER, STRANGERS = 4242, 4243  # a uid and a gid that own nothing here
DEFAULT_XATTR = "system.posix_acl_default"


def blob(*entries: tuple[int, int, int]) -> bytes:
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def acl(*named: tuple[int, int, int], group: int = 0, mask: int | None = None) -> bytes:
    """An access ACL: owner rw, owning group ``group``, ``named`` entries, no other."""
    if mask is None:
        mask = group
        for _, perm, _ in named:
            mask |= perm
    fixed = [(USER_OBJ, 6, NOBODY), (GROUP_OBJ, group, NOBODY), (MASK, mask, NOBODY), (OTHER, 0, NOBODY)]
    return blob(*sorted([*fixed, *named], key=lambda entry: (entry[0], entry[2])))  # the kernel's order


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    generate_key_file(path)
    try:
        os.setxattr(path, XATTR, acl())  # probe: does this filesystem hold ACLs?
        os.removexattr(path, XATTR)
    except OSError as exc:
        if exc.errno not in (errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        require_server(False, f"POSIX ACLs on the test filesystem ({tmp_path})")
    return path


def set_acl(path: Path, data: bytes, name: str = XATTR) -> None:
    os.setxattr(path, name, data)


@pytest.mark.parametrize(
    ("entry", "shown"),
    [
        ((USER, 4, STRANGER), f"user:{STRANGER}:r--"),
        ((USER, 2, STRANGER), f"user:{STRANGER}:-w-"),
        ((GROUP, 4, STRANGERS), f"group:{STRANGERS}:r--"),
        ((GROUP, 7, STRANGERS), f"group:{STRANGERS}:rwx"),
    ],
)
def test_an_acl_entry_for_someone_else_is_refused(
    key_file: Path, entry: tuple[int, int, int], shown: str
) -> None:
    set_acl(key_file, acl(entry))
    assert key_file.stat().st_mode & 0o007 == 0  # the mode alone would pass
    with pytest.raises(KeyFileError, match="through its ACL") as info:
        load_key_file(key_file)
    message = str(info.value)
    assert str(key_file) in message and shown in message and "setfacl -b" in message


def test_named_entries_without_permissions_grant_nothing(key_file: Path) -> None:
    set_acl(key_file, acl((USER, 0, STRANGER), (GROUP, 0, STRANGERS)))
    assert isinstance(load_key_file(key_file), Cipher)


def test_a_masked_entry_is_refused_too(key_file: Path) -> None:
    """``mask::---`` hides the entry today; ``chmod g+r`` would bring it back."""
    set_acl(key_file, acl((USER, 4, STRANGER), mask=0))
    with pytest.raises(KeyFileError, match=f"user:{STRANGER}:r--"):
        load_key_file(key_file)


def test_the_owning_group_and_the_reading_user_are_fine(key_file: Path) -> None:
    """What systemd's LoadCredential= does: the credential belongs to root (here: someone
    else) and the service user gets ``user:<its uid>:r`` in the ACL."""
    group = os.getegid()
    if os.geteuid() == 0:  # only root can give the file away
        os.chown(key_file, STRANGER, STRANGERS)
        group = STRANGERS
    set_acl(key_file, acl((USER, 4, os.geteuid()), (GROUP, 4, group), group=4))
    assert isinstance(load_key_file(key_file), Cipher)


def test_an_acl_with_only_owner_group_and_mask_is_fine(key_file: Path) -> None:
    set_acl(key_file, acl(group=4))
    assert isinstance(load_key_file(key_file), Cipher)


def test_rotation_refuses_a_key_file_with_a_wide_acl(key_file: Path) -> None:
    set_acl(key_file, acl((USER, 4, STRANGER)))
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="through its ACL"):
        rotate_key_file(key_file)
    assert key_file.read_bytes() == before


def test_rotation_refuses_to_hand_the_new_key_to_a_default_acl(key_file: Path) -> None:
    """A default ACL on the folder is inherited by the rotated copy: it must not replace the file."""
    before = key_file.read_bytes()
    set_acl(key_file.parent, acl((USER, 4, STRANGER)), DEFAULT_XATTR)
    with pytest.raises(KeyFileError, match="left unchanged") as info:
        rotate_key_file(key_file)
    assert f"user:{STRANGER}:r--" in str(info.value)
    assert key_file.read_bytes() == before
    assert sorted(p.name for p in key_file.parent.iterdir()) == ["keys"]  # no copy left behind


def test_an_acl_set_by_setfacl_is_refused(key_file: Path) -> None:
    setfacl = shutil.which("setfacl")
    require_server(setfacl is not None, "setfacl (Debian package acl)")
    assert setfacl is not None
    subprocess.run([setfacl, "-m", f"u:{STRANGER}:r", str(key_file)], check=True)
    with pytest.raises(KeyFileError, match=f"user:{STRANGER}:r--"):
        load_key_file(key_file)
    subprocess.run([setfacl, "-b", str(key_file)], check=True)  # what the message says to run
    assert isinstance(load_key_file(key_file), Cipher)


# --- the binary format, without a filesystem ---------------------------------------------


def test_parse_the_kernel_format() -> None:
    # As read back from a file after `setfacl -m u:4242:r,g:4243:rw` (getfacl -n agrees).
    data = bytes.fromhex(
        "0200000001000600ffffffff020004009210000004000000ffffffff"
        "080006009310000010000600ffffffff20000000ffffffff"
    )
    entries = parse_acl(data)
    assert [e.describe() for e in entries] == [
        "user::rw-",
        "user:4242:r--",
        "group::---",
        "group:4243:rw-",
        "mask::rw-",
        "other::---",
    ]
    wide = extra_access(entries, owner=0, group=0, reader=0)
    assert [e.describe() for e in wide] == ["user:4242:r--", "group:4243:rw-"]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (b"", "not a header"),
        (b"\x02\x00\x00", "not a header"),
        (blob((USER_OBJ, 6, NOBODY)) + b"\x00", "not a header"),
        (struct.pack("<I", 1) + struct.pack("<HHI", USER_OBJ, 6, NOBODY), "version 1"),
        (blob((0x40, 4, 1)), "unknown entry tag 0x40"),
    ],
)
def test_an_acl_that_cannot_be_understood_is_an_error(data: bytes, problem: str) -> None:
    with pytest.raises(AclFormatError, match=problem):
        parse_acl(data)


def test_other_with_permissions_counts_as_access() -> None:
    entries = [AclEntry(USER_OBJ, 6, NOBODY), AclEntry(OTHER, 4, NOBODY)]
    assert extra_access(entries, owner=1, group=1, reader=1) == [AclEntry(OTHER, 4, NOBODY)]
