"""Personal data protection: field encryption at rest, keyed hashing, log redaction.

The gateway holds criminal-case data about named people, so identity numbers, names
and contact details are encrypted in the database with keys that live outside it, two
orders naming the same person are matched by a keyed hash instead of by decrypting,
and nothing shaped like an identity number reaches a log line.

One concept per module; import from here, the names below are the contract:

- ``cipher``: ``Cipher`` (Fernet keys and the identity hash via HKDF), ``DecryptionError``
- ``keyfile``: reading (mode and ACL checks), generating and rotating the key file
- ``acl``: decoding the key file's POSIX ACL
- ``columns``: the ``EncryptedText`` / ``EncryptedBytes`` column types, the installed cipher
- ``redaction``: ``redact`` and the redacting logging filter and formatter
- ``logs``: ``configure_logging``: JSON, journald and terminal output

The package sits low in the layering: from the gateway it imports only
``gateway.clock`` (``gateway.ports`` and ``gateway.domain`` would be allowed too).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gateway.privacy.cipher import Cipher, DecryptionError
    from gateway.privacy.columns import EncryptedBytes, EncryptedText, active_cipher, install_cipher
    from gateway.privacy.keyfile import (
        KeyFileError,
        generate_key_file,
        load_key_file,
        new_key_line,
        rotate_key_file,
    )
    from gateway.privacy.logs import (
        LOG_FIELDS,
        JournalFormatter,
        JsonFormatter,
        TextFormatter,
        configure_logging,
    )
    from gateway.privacy.redaction import MASK, RedactingFilter, RedactingFormatter, redact

# Each name is imported from its module when first used (PEP 562): a command that only
# configures logging must not pay for SQLAlchemy (``columns``) or cryptography
# (``cipher``), which is most of what a short command like ``russak cases`` costs.
_HOME = {
    "Cipher": "cipher",
    "DecryptionError": "cipher",
    "EncryptedBytes": "columns",
    "EncryptedText": "columns",
    "active_cipher": "columns",
    "install_cipher": "columns",
    "KeyFileError": "keyfile",
    "generate_key_file": "keyfile",
    "load_key_file": "keyfile",
    "new_key_line": "keyfile",
    "rotate_key_file": "keyfile",
    "LOG_FIELDS": "logs",
    "JournalFormatter": "logs",
    "JsonFormatter": "logs",
    "TextFormatter": "logs",
    "configure_logging": "logs",
    "MASK": "redaction",
    "RedactingFilter": "redaction",
    "RedactingFormatter": "redaction",
    "redact": "redaction",
}


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "LOG_FIELDS",
    "MASK",
    "Cipher",
    "DecryptionError",
    "EncryptedBytes",
    "EncryptedText",
    "JournalFormatter",
    "JsonFormatter",
    "KeyFileError",
    "RedactingFilter",
    "RedactingFormatter",
    "TextFormatter",
    "active_cipher",
    "configure_logging",
    "generate_key_file",
    "install_cipher",
    "load_key_file",
    "new_key_line",
    "redact",
    "rotate_key_file",
]
