"""POSIX access control lists on the key file: who besides owner and group may read it.

A mode of 0600 says nothing when the file also carries an ACL: ``setfacl -m u:bob:r``
lets bob read every person's data while ``ls -l`` only shows a ``+``. Linux keeps
the ACL in the ``system.posix_acl_access`` extended attribute, in a small binary
format (``include/uapi/linux/posix_acl_xattr.h``)::

    u32 version (= 2), then 8-byte entries: u16 tag, u16 perm, u32 id   (little-endian)

This module reads that attribute from the open file descriptor (so the very file that
is read is checked) and names the entries that grant access to anyone else:

- a named user entry (``user:bob:r``) with any permission, unless it names the user
  reading the file or the file's owner: systemd's ``LoadCredential=`` can hand a
  root-owned credential to the service user exactly that way, as ``user:<uid>:r``;
- a named group entry (``group:staff:r``) with any permission, unless it names the
  owning group, which the mode check already allows;
- the ``other`` entry with any permission (the same as the mode check).

The mask entry is not a grant: it only caps the named entries and the owning group.
Those are judged on their own permissions, not the masked ones, so a later
``chmod g+r`` (which raises the mask) cannot quietly widen an entry that passed.
"""

from __future__ import annotations

import errno
import os
import struct
from dataclasses import dataclass

__all__ = ["AclEntry", "AclFormatError", "extra_access", "parse_acl", "read_acl"]

XATTR = "system.posix_acl_access"
VERSION = 2
_HEADER = struct.Struct("<I")
_ENTRY = struct.Struct("<HHI")

USER_OBJ = 0x01
USER = 0x02
GROUP_OBJ = 0x04
GROUP = 0x08
MASK = 0x10
OTHER = 0x20
_TAGS = {USER_OBJ: "user", USER: "user", GROUP_OBJ: "group", GROUP: "group", MASK: "mask", OTHER: "other"}
_NO_ACL = {errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP}


class AclFormatError(ValueError):
    """The ACL attribute is not in the one format this code understands."""


@dataclass(frozen=True)
class AclEntry:
    tag: int
    perm: int
    id: int

    def describe(self) -> str:
        """``user:1001:r--``, as ``getfacl -n`` prints it."""
        rwx = "".join(flag if self.perm & bit else "-" for flag, bit in (("r", 4), ("w", 2), ("x", 1)))
        qualifier = str(self.id) if self.tag in (USER, GROUP) else ""
        return f"{_TAGS[self.tag]}:{qualifier}:{rwx}"


def parse_acl(blob: bytes) -> list[AclEntry]:
    """Decode ``system.posix_acl_access``; anything unexpected is an error, never "no ACL"."""
    if len(blob) < _HEADER.size or (len(blob) - _HEADER.size) % _ENTRY.size:
        raise AclFormatError(f"{len(blob)} bytes are not a header plus whole entries")
    (version,) = _HEADER.unpack_from(blob)
    if version != VERSION:
        raise AclFormatError(f"version {version}, expected {VERSION}")
    entries = [AclEntry(*fields) for fields in _ENTRY.iter_unpack(blob[_HEADER.size :])]
    for entry in entries:
        if entry.tag not in _TAGS:
            raise AclFormatError(f"unknown entry tag {entry.tag:#x}")
    return entries


def read_acl(fd: int) -> list[AclEntry]:
    """The access ACL of an open file; ``[]`` when it has none or cannot have one.

    ``ENODATA`` means a plain mode without ACL; ``ENOTSUP`` means the filesystem (like
    a platform without ``os.getxattr``) holds no ACLs, so the mode is the whole truth.
    Other errors propagate: an ACL that cannot be read cannot be trusted.
    """
    getxattr = getattr(os, "getxattr", None)
    if getxattr is None:
        return []
    try:
        blob: bytes = getxattr(fd, XATTR)
    except OSError as exc:
        if exc.errno in _NO_ACL:
            return []
        raise
    return parse_acl(blob)


def extra_access(entries: list[AclEntry], *, owner: int, group: int, reader: int) -> list[AclEntry]:
    """The entries that give anyone but the owner, the owning group or ``reader`` access.

    ``reader`` is the user reading the key file (the service itself): an entry for it
    grants nothing to anyone else.
    """
    return [
        entry
        for entry in entries
        if entry.perm
        and (
            (entry.tag == USER and entry.id not in (owner, reader))
            or (entry.tag == GROUP and entry.id != group)
            or entry.tag == OTHER
        )
    ]
