"""The cipher: field encryption and the keyed identity hash, from the key file's keys.

Each master key from the key file is stretched with HKDF-SHA256 into two separate
keys (different ``info``): a Fernet key for encryption and an HMAC key for the
identity hash, so neither use weakens the other and the raw file key is never used
directly.

The newest key (first line) does everything new: it encrypts, and it keys the hash
stored with a person. Older keys are kept only so that data written before a
rotation still decrypts and still matches, until ``russak key reencrypt`` has
rewritten every token and every hash under the newest key. After that, a leaked old
key opens nothing in the live database.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

__all__ = ["KEY_BYTES", "Cipher", "DecryptionError"]

KEY_BYTES = 32
_FERNET_INFO = b"russak-gateway field encryption v1"
_HASH_INFO = b"russak-gateway identity hash v1"
_UNREADABLE = "stored value cannot be decrypted with any key in the key file"


class DecryptionError(Exception):
    """A stored value could not be decrypted with any key in the key file."""


def _derive(master: bytes, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(master)


def _hash(key: bytes, value: str) -> str:
    """Hex HMAC-SHA256 with all whitespace removed, so ``178590 10067`` matches too."""
    return hmac.new(key, "".join(value.split()).encode("utf-8"), hashlib.sha256).hexdigest()


class Cipher:
    """Encrypts and hashes with the first (newest) key, decrypts with any.

    Tokens are Fernet tokens (AES-128-CBC + HMAC-SHA256, with a timestamp), so they
    are authenticated: a tampered or foreign value fails loudly instead of decrypting
    to garbage. Encryption is randomised, so equal inputs give different tokens; use
    ``keyed_hash`` / ``keyed_hashes`` to look things up.
    """

    def __init__(self, master_keys: Sequence[bytes]) -> None:
        if not master_keys:
            raise ValueError("at least one key is needed")
        if any(len(key) != KEY_BYTES for key in master_keys):
            raise ValueError(f"every key must be {KEY_BYTES} bytes")
        self._fernets = [Fernet(base64.urlsafe_b64encode(_derive(k, _FERNET_INFO))) for k in master_keys]
        self._fernet = MultiFernet(self._fernets)
        self._hash_keys = [_derive(k, _HASH_INFO) for k in master_keys]

    def __repr__(self) -> str:
        return f"<Cipher with {len(self._fernets)} key(s)>"

    def encrypt(self, data: bytes) -> bytes:
        return self._fernet.encrypt(data)

    def decrypt(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise DecryptionError(_UNREADABLE) from None

    def encrypt_text(self, text: str) -> bytes:
        return self.encrypt(text.encode("utf-8"))

    def decrypt_text(self, token: bytes) -> str:
        return self.decrypt(token).decode("utf-8")

    def rotate(self, token: bytes) -> bytes:
        """Re-encrypt ``token`` under the newest key (for re-keying stored data)."""
        try:
            return self._fernet.rotate(token)
        except InvalidToken:
            raise DecryptionError(_UNREADABLE) from None

    def is_current(self, token: bytes) -> bool:
        """True when ``token`` is already under the newest key.

        Lets ``reencrypt`` skip what an earlier, interrupted run already rewrote, so
        a second run finishes the job instead of redoing it. A token under an older
        key fails the newest key's HMAC check at once, so asking is cheap.
        """
        try:
            self._fernets[0].decrypt(token)
        except InvalidToken:
            return False
        return True

    def keyed_hash(self, value: str) -> str:
        """Hex HMAC-SHA256 of ``value`` (whitespace removed) under the newest key.

        Lets intake see that two orders name the same person without decrypting
        anything, while the hash is useless to anyone without the key file (a plain
        hash of an 11-digit number is reversed by brute force in seconds). This is the
        one to store; to look a stored hash up, match against ``keyed_hashes``.
        """
        return _hash(self._hash_keys[0], value)

    def keyed_hashes(self, value: str) -> list[str]:
        """``value``'s keyed hash under every key, newest first, for ``IN (...)`` lookups.

        Between ``key rotate`` and the end of ``key reencrypt`` the stored hashes are a
        mix of old and new keys; matching against all of them keeps "same person"
        checks working through that window. Once every hash is re-keyed, the extra
        entries simply match nothing.
        """
        return list(dict.fromkeys(_hash(key, value) for key in self._hash_keys))  # a repeated key: once
