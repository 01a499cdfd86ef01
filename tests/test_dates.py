"""Dates and times as staff type them in e-mail commands and on the command line."""

from __future__ import annotations

from datetime import date, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.domain.dates import DateParseError, parse_staff_date, parse_staff_time
from gateway.domain.identifiers import synthetic_identity_number

TODAY = date(2026, 11, 20)


@pytest.mark.parametrize(
    "text", ["2026-12-03", "3.12.2026", "03.12.2026", "03.12", "3.12", "3.12.", "  03.12  "]
)
def test_accepted_forms(text: str) -> None:
    assert parse_staff_date(text, TODAY) == date(2026, 12, 3)


@pytest.mark.parametrize(
    ("text", "offset"),
    [
        ("i dag", 0),
        ("I dag", 0),
        ("idag", 0),
        ("today", 0),
        ("TODAY", 0),
        ("i går", -1),
        ("I  GÅR", -1),
        ("igår", -1),
        ("yesterday", -1),
        ("i morgen", 1),
        ("tomorrow", 1),
    ],
)
def test_relative_words(text: str, offset: int) -> None:
    assert parse_staff_date(text, TODAY) == TODAY + timedelta(days=offset)


def test_relative_words_cross_month_and_year() -> None:
    assert parse_staff_date("i går", date(2027, 1, 1)) == date(2026, 12, 31)


@pytest.mark.parametrize(
    ("text", "today", "expected"),
    [
        ("03.12", date(2027, 1, 10), date(2026, 12, 3)),  # January: last December
        ("03.12", date(2026, 6, 10), date(2026, 12, 3)),  # June: this December
        ("15.01", date(2026, 12, 20), date(2027, 1, 15)),  # December: next January
        ("20.05", date(2026, 11, 1), date(2026, 5, 20)),  # half a year back
        ("29.02", date(2027, 12, 1), date(2028, 2, 29)),  # only the leap year has it
    ],
)
def test_year_is_the_one_closest_to_today(text: str, today: date, expected: date) -> None:
    assert parse_staff_date(text, today) == expected


@pytest.mark.parametrize(
    "text",
    [
        "32.13",
        "",
        "   ",
        "i forgårs",
        "abc",
        "2026-13-01",
        "2026-02-30",
        "31.02.2026",
        "0.1",
        "3.12.26",
        "3/12",
        "12032026",
        "2026-12-03 extra",
    ],
)
def test_junk_is_refused(text: str) -> None:
    with pytest.raises(DateParseError):
        parse_staff_date(text, TODAY)


def test_29_february_without_a_leap_year_nearby_is_refused() -> None:
    with pytest.raises(DateParseError):
        parse_staff_date("29.02", date(2026, 6, 1))
    with pytest.raises(DateParseError):  # the next one is 14 months away: a typo
        parse_staff_date("29.02", date(2027, 1, 1))


def test_error_message_is_norwegian_and_shows_the_forms() -> None:
    with pytest.raises(DateParseError) as info:
        parse_staff_date("32.13", TODAY)
    assert str(info.value) == "Ukjent dato «32.13». Skriv 2026-12-03, 3.12.2026 eller 03.12."
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("separator", ["", " ", "."])
def test_error_message_never_echoes_an_identity_number(separator: str) -> None:
    number = synthetic_identity_number(date(1999, 7, 4), 123)
    assert number is not None
    typed = number[:6] + separator + number[6:]
    with pytest.raises(DateParseError) as info:
        parse_staff_date(typed, TODAY)
    assert number[:6] not in str(info.value)
    assert number[6:] not in str(info.value)
    with pytest.raises(DateParseError) as info_time:
        parse_staff_time(typed)
    assert number[:6] not in str(info_time.value)


def test_error_message_is_short_for_long_input() -> None:
    with pytest.raises(DateParseError) as info:
        parse_staff_date("x" * 500, TODAY)
    assert len(str(info.value)) < 120


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("10:00", time(10, 0)),
        ("10.00", time(10, 0)),
        ("9:30", time(9, 30)),
        ("09:30", time(9, 30)),
        ("kl 10:00", time(10, 0)),
        ("kl. 10.15", time(10, 15)),
        ("Kl 14", time(14, 0)),
        ("kl.9", time(9, 0)),
        ("0:00", time(0, 0)),
        ("23:59", time(23, 59)),
        (" kl  8.05 ", time(8, 5)),
    ],
)
def test_times(text: str, expected: time) -> None:
    assert parse_staff_time(text) == expected


@pytest.mark.parametrize(
    "text", ["24:00", "10:60", "10", "10:5", "abc", "", "kl", "10:00:00", "-1:00", "kl 25"]
)
def test_junk_times_are_refused(text: str) -> None:
    with pytest.raises(DateParseError) as info:
        parse_staff_time(text)
    assert str(info.value).startswith("Ukjent klokkeslett")


any_date = st.dates(min_value=date(1000, 1, 1), max_value=date(9999, 12, 31))


@given(d=any_date)
def test_full_dates_round_trip(d: date) -> None:
    assert parse_staff_date(d.isoformat(), TODAY) == d
    assert parse_staff_date(f"{d.day}.{d.month}.{d.year}", TODAY) == d
    assert parse_staff_date(f"{d.day:02d}.{d.month:02d}.{d.year}", TODAY) == d


@given(
    today=st.dates(min_value=date(1900, 1, 1), max_value=date(2900, 12, 31)),
    offset=st.integers(min_value=-180, max_value=180),
)
def test_day_and_month_round_trip_within_six_months(today: date, offset: int) -> None:
    d = today + timedelta(days=offset)
    assert parse_staff_date(f"{d.day}.{d.month}", today) == d
    assert parse_staff_date(f"{d.day:02d}.{d.month:02d}", today) == d


@given(
    today=st.dates(min_value=date(1900, 1, 1), max_value=date(2900, 12, 31)),
    d=st.dates(min_value=date(2000, 1, 1), max_value=date(2000, 12, 31)),
)
def test_day_and_month_never_lands_far_away(today: date, d: date) -> None:
    try:
        result = parse_staff_date(f"{d.day}.{d.month}", today)
    except DateParseError:
        assert (d.day, d.month) == (29, 2)  # only a leap day can be missing nearby
        return
    assert (result.day, result.month) == (d.day, d.month)
    assert abs((result - today).days) <= 183


@given(hour=st.integers(0, 23), minute=st.integers(0, 59))
def test_times_round_trip(hour: int, minute: int) -> None:
    t = time(hour, minute)
    assert parse_staff_time(t.strftime("%H:%M")) == t
    assert parse_staff_time(f"{hour}.{minute:02d}") == t
    assert parse_staff_time(f"kl {hour}:{minute:02d}") == t
