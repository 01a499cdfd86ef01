"""Identity numbers written into free text, where they must not stay in clear.

An order carries the person's fødselsnummer in ``Person/Fodselsnummer``, which is
stored encrypted. The same number typed into another field (the case reference, the
sender's name, a remark) would be stored, shown and logged as ordinary text, so the
order reader refuses it in fields that identify the case or the sender and masks it
in free text (``gateway.messages.order_reader`` decides which field gets which).

The shape is deliberately broader than ``gateway.privacy.redact``: besides 11 digits
and ``DDMMYY NNNNN`` it takes the date written with dots or hyphens (``01.01.80
12345``, ``01-01-80-12345``), the way people write a birth date. Like ``redact`` it
does not ask for valid check digits (a mistyped number is still personal data), and
it leaves UUIDs whole, whose groups can hold an 11-digit run next to a letter. The
mask is ``gateway.privacy.MASK``, so masked text looks the same everywhere.
"""

from __future__ import annotations

import re

from gateway.domain.identifiers import IDENTITY_SHAPED
from gateway.privacy import MASK

__all__ = ["MASK", "contains_identity_number", "mask_identity_numbers"]

_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
_PATTERN = re.compile(rf"(?P<uuid>{_UUID})|{IDENTITY_SHAPED}")


def contains_identity_number(text: str) -> bool:
    """Does ``text`` hold anything shaped like an identity number?"""
    return any(match["uuid"] is None for match in _PATTERN.finditer(text))


def mask_identity_numbers(text: str) -> str:
    """``text`` with everything shaped like an identity number replaced by ``MASK``."""
    return _PATTERN.sub(lambda match: match[0] if match["uuid"] else MASK, text)
