"""SQLAlchemy column types that store personal data encrypted, and the cipher they use.

The ORM maps a column to ``EncryptedText`` or ``EncryptedBytes`` and services read and
write plain values; encryption happens at the boundary to the database, so no service
can forget it. SQLAlchemy gives a type no way to receive the cipher per session, so
the one loaded at start is installed process-wide with ``install_cipher``.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Dialect
from sqlalchemy.types import LargeBinary, TypeDecorator

from gateway.privacy.cipher import Cipher

__all__ = ["EncryptedBytes", "EncryptedText", "active_cipher", "install_cipher"]

_active: Cipher | None = None


def install_cipher(cipher: Cipher | None) -> None:
    """Make ``cipher`` the one the column types use (``None`` uninstalls it)."""
    global _active
    _active = cipher


def active_cipher() -> Cipher:
    """The installed cipher; without one, writing fails instead of storing clear text."""
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
