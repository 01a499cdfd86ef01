"""Norwegian identity numbers (fødselsnummer, D-, H- and synthetic numbers) and
organisation numbers.

The check-digit rules change in 2032: k1 may then leave a remainder of 0, 1, 2 or 3
(the old rule demanded 0), and the number stops encoding sex and century. Numbers
under the new rule may already be issued in test data, so both rules are accepted,
sex is never derived, and a birth date is derived only when the old rule holds and
the individual number gives the century. An explicit birth date always wins.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from enum import StrEnum

_W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2, 1)
_W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2, 1)
_ORG_W = (3, 2, 7, 6, 5, 4, 3, 2)
_CANDIDATE = re.compile(r"(?<![\d])(\d{6})[ ]?(\d{5})(?![\d])")


class NumberKind(StrEnum):
    FODSELSNUMMER = "fodselsnummer"
    D_NUMBER = "d_number"
    H_NUMBER = "h_number"
    SYNTHETIC = "synthetic"


@dataclass(frozen=True)
class IdentityNumber:
    """A checked identity number; ``value`` is the 11 digits without spaces."""

    value: str
    kind: NumberKind
    day: int
    month: int
    yy: int
    old_rule: bool

    def birth_date(self) -> date | None:
        """Birth date when the number says so (old check rule and a known century)."""
        if not self.old_rule:
            return None
        century = _century(self.yy, int(self.value[6:9]))
        if century is None:
            return None
        try:
            return date(century + self.yy, self.month, self.day)
        except ValueError:
            return None


class InvalidIdentityNumber(ValueError):
    """The string is not a valid identity number; the message says why (no digits)."""


def _century(yy: int, individual: int) -> int | None:
    if individual <= 499:
        return 1900
    if individual <= 749 and yy >= 54:
        return 1800
    if yy <= 39:
        return 2000
    if individual >= 900:
        return 1900
    return None


def parse_identity_number(text: str) -> IdentityNumber:
    """Check ``text`` and return what it encodes, or raise InvalidIdentityNumber.

    Error messages never contain the digits, so they are safe to log and to show in
    quarantine reasons.
    """
    value = text.replace(" ", "").strip()
    if len(value) != 11 or not value.isdigit():
        raise InvalidIdentityNumber("identity number must be 11 digits")
    digits = [int(c) for c in value]
    k1_remainder = sum(d * w for d, w in zip(digits[:10], _W1, strict=True)) % 11
    if k1_remainder not in (0, 1, 2, 3):
        raise InvalidIdentityNumber("identity number fails check digit 1")
    if sum(d * w for d, w in zip(digits, _W2, strict=True)) % 11 != 0:
        raise InvalidIdentityNumber("identity number fails check digit 2")
    day, month, yy = int(value[0:2]), int(value[2:4]), int(value[4:6])
    kind = NumberKind.FODSELSNUMMER
    if day > 40:
        kind, day = NumberKind.D_NUMBER, day - 40
    if month > 80:
        kind, month = (NumberKind.SYNTHETIC, month - 80)
    elif month > 40:
        kind, month = (NumberKind.H_NUMBER, month - 40)
    if not 1 <= month <= 12 or not 1 <= day <= 31:
        raise InvalidIdentityNumber("identity number has no valid date part")
    try:
        date(2000, month, day)  # leap-year tolerant check of day within month
    except ValueError as exc:
        raise InvalidIdentityNumber("identity number has no valid date part") from exc
    return IdentityNumber(value, kind, day, month, yy, old_rule=k1_remainder == 0)


def is_valid_identity_number(text: str) -> bool:
    try:
        parse_identity_number(text)
    except InvalidIdentityNumber:
        return False
    return True


def find_identity_numbers(text: str) -> list[str]:
    """Every valid identity number in free text (letters), in order, without repeats."""
    found: list[str] = []
    for match in _CANDIDATE.finditer(text):
        value = match.group(1) + match.group(2)
        if value not in found and is_valid_identity_number(value):
            found.append(value)
    return found


# Eleven digits written as an identity number may be: DD MM YY, run together or with a
# dot or hyphen after both DD and MM (not a bank account's 4.2.5), then an optional
# space, dot or hyphen, then the five digits; never part of a longer digit run. The
# one pattern for every place that masks or refuses such text (log redaction, order
# free text, staff free text). Letters around it do not protect it: an eleven-digit run
# inside a hash is masked too, which costs a log reader less than a leak would.
_SPACE = r"[ \t\u00a0]?"
IDENTITY_SHAPED = rf"(?<!\d)\d\d(?:[.\-]\d\d[.\-]|\d\d)\d\d{_SPACE}[.\-]?{_SPACE}\d{{5}}(?!\d)"
_IDENTITY_SHAPED = re.compile(IDENTITY_SHAPED)


def has_identity_shaped(text: str) -> bool:
    """True when free text holds eleven digits shaped like an identity number (valid or
    not: a mistyped one is personal data too). Free-text fields refuse such text."""
    return _IDENTITY_SHAPED.search(text) is not None


def is_valid_org_number(text: str) -> bool:
    """Brønnøysund organisation number: 9 digits, mod-11 check digit."""
    value = text.replace(" ", "").strip()
    if len(value) != 9 or not value.isdigit():
        return False
    digits = [int(c) for c in value]
    check = 11 - sum(d * w for d, w in zip(digits[:8], _ORG_W, strict=True)) % 11
    if check == 11:
        check = 0
    return check != 10 and check == digits[8]


def org_number_with_check(first8: str) -> str | None:
    """Complete eight digits into a valid organisation number (None if impossible)."""
    digits = [int(c) for c in first8]
    check = 11 - sum(d * w for d, w in zip(digits, _ORG_W, strict=True)) % 11
    if check == 11:
        check = 0
    return None if check == 10 else first8 + str(check)


def synthetic_identity_number(birth: date, individual: int) -> str | None:
    """A synthetic (month + 80) number for tests and the demo, old check rule.

    Returns None when no valid check digits exist for this individual number; callers
    simply try the next one. Never produces a real person's number.
    """
    base = f"{birth.day:02d}{birth.month + 80:02d}{birth.year % 100:02d}{individual:03d}"
    digits = [int(c) for c in base]
    k1 = 11 - sum(d * w for d, w in zip(digits, _W1[:9], strict=True)) % 11
    k1 = 0 if k1 == 11 else k1
    if k1 == 10:
        return None
    digits.append(k1)
    k2 = 11 - sum(d * w for d, w in zip(digits, _W2[:10], strict=True)) % 11
    k2 = 0 if k2 == 11 else k2
    if k2 == 10:
        return None
    return base + str(k1) + str(k2)
