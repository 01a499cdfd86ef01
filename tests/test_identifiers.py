"""Identity numbers (fødselsnummer, D-, H-, synthetic) and organisation numbers.

Only synthetic numbers (month + 80) are written in this file. The D- and H-number
kinds can only be tested with a real-shaped month, so those numbers are built in
memory at run time and the assertions compare kinds, never the number itself.
"""

from __future__ import annotations

import re
from datetime import date

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from gateway.domain.identifiers import (
    InvalidIdentityNumber,
    NumberKind,
    find_identity_numbers,
    is_valid_identity_number,
    is_valid_org_number,
    org_number_with_check,
    parse_identity_number,
    synthetic_identity_number,
)

W1 = (3, 7, 6, 1, 8, 9, 4, 5, 2)
W2 = (5, 4, 3, 2, 7, 6, 5, 4, 3, 2)


def complete(base9: str, k1_remainder: int = 0) -> str | None:
    """Independent check-digit completion: the k1 digit gives this mod-11 remainder."""
    digits = [int(c) for c in base9]
    k1 = (k1_remainder - sum(d * w for d, w in zip(digits, W1, strict=True))) % 11
    if k1 == 10:
        return None
    digits.append(k1)
    k2 = -sum(d * w for d, w in zip(digits, W2, strict=True)) % 11
    if k2 == 10:
        return None
    return base9 + str(k1) + str(k2)


def first_complete(prefix6: str, individuals: range, k1_remainder: int = 0) -> str:
    for individual in individuals:
        number = complete(f"{prefix6}{individual:03d}", k1_remainder)
        if number is not None:
            return number
    raise AssertionError("no valid number in range")


def synthetic(birth: date, individuals: range = range(1000)) -> str:
    for individual in individuals:
        number = synthetic_identity_number(birth, individual)
        if number is not None:
            return number
    raise AssertionError("no synthetic number in range")


def test_synthetic_number_parses() -> None:
    number = synthetic(date(1990, 5, 17), range(100, 500))
    parsed = parse_identity_number(number)
    assert parsed.kind is NumberKind.SYNTHETIC
    assert (parsed.day, parsed.month, parsed.yy) == (17, 5, 90)
    assert parsed.old_rule
    assert parsed.value == number
    assert parsed.birth_date() == date(1990, 5, 17)


def test_spaces_are_ignored() -> None:
    number = synthetic(date(2004, 2, 29), range(500, 1000))
    spaced = f" {number[:6]} {number[6:]} "
    assert parse_identity_number(spaced).value == number
    assert parse_identity_number(spaced).birth_date() == date(2004, 2, 29)


@pytest.mark.parametrize(
    ("birth", "individuals"),
    [
        (date(1985, 1, 31), range(0, 500)),  # 000-499: 1900s
        (date(1870, 3, 2), range(500, 750)),  # 500-749 with yy >= 54: 1800s
        (date(2015, 12, 1), range(500, 1000)),  # 500-999 with yy <= 39: 2000s
        (date(1960, 6, 6), range(900, 1000)),  # 900-999 with yy >= 40: 1900s
    ],
)
def test_century_from_individual_number(birth: date, individuals: range) -> None:
    assert parse_identity_number(synthetic(birth, individuals)).birth_date() == birth


def test_no_birth_date_when_century_is_unknown() -> None:
    # 750-899 with yy 40-53 does not say which century.
    number = synthetic(date(1945, 4, 4), range(750, 900))
    assert parse_identity_number(number).birth_date() is None


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2039, 12, 31)),
    individual=st.integers(min_value=0, max_value=999),
)
def test_every_synthetic_number_is_valid_and_gives_its_birth_date(birth: date, individual: int) -> None:
    number = synthetic_identity_number(birth, individual)
    assume(number is not None)
    assert number is not None
    parsed = parse_identity_number(number)
    assert parsed.kind is NumberKind.SYNTHETIC
    assert int(number[2:4]) == birth.month + 80
    derived = parsed.birth_date()
    # The individual number picks the century, so only day, month and yy must agree.
    if derived is not None:
        assert (derived.day, derived.month, derived.year % 100) == (
            birth.day,
            birth.month,
            birth.year % 100,
        )
    if (birth.year >= 2000 and individual >= 500) or (birth.year < 2000 and individual < 500):
        assert derived == birth


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2039, 12, 31)),
    individual=st.integers(min_value=0, max_value=999),
    position=st.integers(min_value=0, max_value=10),
    delta=st.integers(min_value=1, max_value=9),
)
def test_any_single_digit_change_is_caught(birth: date, individual: int, position: int, delta: int) -> None:
    number = synthetic_identity_number(birth, individual)
    assume(number is not None)
    assert number is not None
    changed = (int(number[position]) + delta) % 10
    typo = number[:position] + str(changed) + number[position + 1 :]
    # k2 alone catches every single-digit change (11 is prime, weights non-zero).
    assert not is_valid_identity_number(typo)


def test_d_number_kind() -> None:
    # Real-shaped (day + 40, month 1-12): built at run time only, never written out.
    number = first_complete(f"{13 + 40}{5:02d}90", range(100, 500))
    kind = parse_identity_number(number).kind
    day = parse_identity_number(number).day
    assert kind is NumberKind.D_NUMBER
    assert day == 13


def test_h_number_kind() -> None:
    # Real-shaped (month + 40): built at run time only, never written out.
    number = first_complete(f"13{5 + 40}90", range(100, 500))
    kind = parse_identity_number(number).kind
    month = parse_identity_number(number).month
    assert kind is NumberKind.H_NUMBER
    assert month == 5


def test_synthetic_d_number_counts_as_synthetic() -> None:
    number = first_complete("538590", range(100, 500))
    parsed = parse_identity_number(number)
    assert parsed.kind is NumberKind.SYNTHETIC
    assert (parsed.day, parsed.month) == (13, 5)


@pytest.mark.parametrize("remainder", [1, 2, 3])
def test_2032_rule_accepted_without_birth_date(remainder: int) -> None:
    number = first_complete("178590", range(100, 500), k1_remainder=remainder)
    parsed = parse_identity_number(number)
    assert not parsed.old_rule
    assert parsed.birth_date() is None
    assert parsed.kind is NumberKind.SYNTHETIC


@pytest.mark.parametrize("remainder", [4, 5, 9])
def test_other_k1_remainders_are_refused(remainder: int) -> None:
    number = first_complete("178590", range(100, 500), k1_remainder=remainder)
    with pytest.raises(InvalidIdentityNumber, match="check digit 1"):
        parse_identity_number(number)


def test_wrong_k2_is_refused_without_digits_in_message() -> None:
    number = synthetic(date(1990, 5, 17))
    typo = number[:10] + str((int(number[10]) + 1) % 10)
    with pytest.raises(InvalidIdentityNumber) as info:
        parse_identity_number(typo)
    assert re.search(r"\d{3}", str(info.value)) is None  # no part of the number


@pytest.mark.parametrize(
    "text", ["", "1234567890", "123456789012", "17859O12345", "abcdefghijk", "17-85-90-123"]
)
def test_wrong_shape_is_refused(text: str) -> None:
    with pytest.raises(InvalidIdentityNumber, match="11 digits"):
        parse_identity_number(text)
    assert not is_valid_identity_number(text)


@pytest.mark.parametrize("prefix", ["008590", "328590", "318290", "178090", "179390"])
def test_impossible_date_part_is_refused(prefix: str) -> None:
    number = first_complete(prefix, range(100, 500))
    with pytest.raises(InvalidIdentityNumber, match="date part") as info:
        parse_identity_number(number)
    assert re.search(r"\d{3}", str(info.value)) is None  # no part of the number


def test_find_identity_numbers_in_free_text() -> None:
    first = synthetic(date(1990, 5, 17))
    second = synthetic(date(2006, 11, 3), range(500, 1000))
    bogus = first[:10] + str((int(first[10]) + 1) % 10)
    text = (
        f"Gjelder {first[:6]} {first[6:]} og {second}.\n"
        f"Feil nummer {bogus}. Igjen: {first}. Lengre: 9{second}9. Org 974760673."
    )
    assert find_identity_numbers(text) == [first, second]
    assert find_identity_numbers("ingen nummer her, RUS-2026-0001") == []


def test_org_numbers() -> None:
    # Brønnøysundregistrene's own (public) organisation number.
    assert is_valid_org_number("974760673")
    assert is_valid_org_number("974 760 673")
    assert not is_valid_org_number("974760674")
    assert not is_valid_org_number("97476067")
    assert not is_valid_org_number("97476067a")
    assert org_number_with_check("97476067") == "974760673"


@given(first8=st.text(alphabet="0123456789", min_size=8, max_size=8))
def test_org_number_completion(first8: str) -> None:
    completed = org_number_with_check(first8)
    if completed is None:
        assert not any(is_valid_org_number(first8 + str(d)) for d in range(10))
        return
    assert is_valid_org_number(completed)
    wrong = [first8 + str(d) for d in range(10) if first8 + str(d) != completed]
    assert not any(is_valid_org_number(w) for w in wrong)
