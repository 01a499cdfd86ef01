"""Norwegian working days: fixed and moveable holidays, weekends, year boundaries."""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

import holidays
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.domain.calendar import WorkingCalendar

CAL = WorkingCalendar()

# Written out by hand from the almanac, not computed, so the test checks the library.
HOLIDAYS_2026 = {
    date(2026, 1, 1),  # Første nyttårsdag (Thursday)
    date(2026, 4, 2),  # Skjærtorsdag
    date(2026, 4, 3),  # Langfredag
    date(2026, 4, 5),  # Første påskedag (Sunday)
    date(2026, 4, 6),  # Andre påskedag
    date(2026, 5, 1),  # 1. mai (Friday)
    date(2026, 5, 14),  # Kristi himmelfartsdag
    date(2026, 5, 17),  # Grunnlovsdag (Sunday this year)
    date(2026, 5, 24),  # Første pinsedag (Sunday)
    date(2026, 5, 25),  # Andre pinsedag
    date(2026, 12, 25),  # Første juledag (Friday)
    date(2026, 12, 26),  # Andre juledag (Saturday)
}
EASTER_2027 = [date(2027, 3, 25), date(2027, 3, 26), date(2027, 3, 28), date(2027, 3, 29)]


def naive_count(start: date, end: date) -> int:
    """Reference implementation: walk day by day."""
    count, d = 0, start
    while d < end:
        d += timedelta(days=1)
        count += CAL.is_working_day(d)
    return count


@pytest.mark.parametrize("day", sorted(HOLIDAYS_2026))
def test_2026_public_holidays_are_not_working_days(day: date) -> None:
    assert not CAL.is_working_day(day)


def test_every_other_weekday_of_2026_is_a_working_day() -> None:
    d = date(2026, 1, 1)
    working = 0
    while d.year == 2026:
        expected = d.weekday() < 5 and d not in HOLIDAYS_2026
        assert CAL.is_working_day(d) is expected, d
        working += expected
        d += timedelta(days=1)
    # 261 weekdays in 2026 minus the 8 holidays that fall on a weekday.
    assert working == 253


@pytest.mark.parametrize("day", EASTER_2027)
def test_easter_2027(day: date) -> None:
    assert not CAL.is_working_day(day)


def test_easter_2027_neighbours_are_working_days() -> None:
    assert CAL.is_working_day(date(2027, 3, 24))  # Wednesday before Maundy Thursday
    assert CAL.is_working_day(date(2027, 3, 30))  # Tuesday after Easter Monday


def test_17_may_on_a_weekday_and_ascension() -> None:
    assert date(2028, 5, 17).weekday() == 2
    assert not CAL.is_working_day(date(2028, 5, 17))
    assert CAL.is_working_day(date(2028, 5, 16))
    assert not CAL.is_working_day(date(2028, 5, 25))  # Kristi himmelfartsdag 2028
    assert not CAL.is_working_day(date(2027, 5, 6))  # Kristi himmelfartsdag 2027
    assert CAL.is_working_day(date(2027, 5, 7))


def test_christmas_eve_and_new_years_eve_are_working_days() -> None:
    assert CAL.is_working_day(date(2026, 12, 24))
    assert CAL.is_working_day(date(2026, 12, 31))
    assert not CAL.is_working_day(date(2027, 12, 25))


def test_next_working_day_moves_a_deadline_over_easter() -> None:
    # Saturday before Easter: Sunday and Monday are holidays, so Tuesday.
    assert CAL.next_working_day(date(2026, 4, 4)) == date(2026, 4, 7)
    assert CAL.next_working_day(date(2026, 4, 2)) == date(2026, 4, 7)
    assert CAL.next_working_day(date(2026, 4, 1)) == date(2026, 4, 1)


def test_add_working_days_across_easter() -> None:
    assert CAL.add_working_days(date(2026, 4, 1), 1) == date(2026, 4, 7)
    assert CAL.add_working_days(date(2026, 3, 30), 5) == date(2026, 4, 9)


def test_add_working_days_across_the_year_boundary() -> None:
    assert CAL.add_working_days(date(2026, 12, 31), 1) == date(2027, 1, 4)
    assert CAL.add_working_days(date(2026, 12, 23), 2) == date(2026, 12, 28)
    assert CAL.working_days_between(date(2026, 12, 24), date(2027, 1, 4)) == 5


def test_add_zero_days_is_next_working_day() -> None:
    assert CAL.add_working_days(date(2026, 12, 25), 0) == date(2026, 12, 28)
    assert CAL.add_working_days(date(2026, 12, 28), 0) == date(2026, 12, 28)


def test_start_day_never_counts() -> None:
    saturday = date(2026, 6, 6)
    assert CAL.add_working_days(saturday, 5) == date(2026, 6, 12)


def test_negative_days_are_refused() -> None:
    with pytest.raises(ValueError):
        CAL.add_working_days(date(2026, 6, 1), -1)


def test_working_days_between_edges() -> None:
    d = date(2026, 6, 3)
    assert CAL.working_days_between(d, d) == 0
    assert CAL.working_days_between(d, d - timedelta(days=10)) == 0
    assert CAL.working_days_between(d, d + timedelta(days=1)) == 1
    # A whole year: 253 working days in 2026 (see above).
    assert CAL.working_days_between(date(2025, 12, 31), date(2026, 12, 31)) == 253


def test_result_is_the_same_if_the_library_counts_sundays(monkeypatch: Any) -> None:
    """holidays' Norway class can list every Sunday as a holiday; that must not matter."""
    original = holidays.country_holidays

    def with_sundays(country: str, **kwargs: Any) -> Any:
        return original(country, include_sundays=True, **kwargs)

    expected = WorkingCalendar()
    monkeypatch.setattr(holidays, "country_holidays", with_sundays)
    assert any(d.weekday() == 6 for d in holidays.country_holidays("NO", years=2026))
    sundays_cal = WorkingCalendar()
    d = date(2026, 1, 1)
    while d < date(2028, 1, 1):
        assert sundays_cal.is_working_day(d) == expected.is_working_day(d), d
        d += timedelta(days=1)
    assert sundays_cal.working_days_between(date(2025, 12, 31), date(2026, 12, 31)) == 253


days = st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 12, 31))


@settings(max_examples=300)
@given(d=days, n=st.integers(min_value=1, max_value=80))
def test_add_then_count_round_trips(d: date, n: int) -> None:
    result = CAL.add_working_days(d, n)
    assert CAL.is_working_day(result)
    assert result > d
    assert CAL.working_days_between(d, result) == n
    # No working day is skipped: the day before the result holds only n-1 of them.
    assert CAL.working_days_between(d, result - timedelta(days=1)) == n - 1


@given(d=days, n=st.integers(min_value=0, max_value=80))
def test_zero_or_more_days_always_land_on_a_working_day(d: date, n: int) -> None:
    assert CAL.is_working_day(CAL.add_working_days(d, n))


@given(start=days, span=st.integers(min_value=-10, max_value=800))
def test_fast_count_matches_day_by_day_count(start: date, span: int) -> None:
    end = start + timedelta(days=span)
    assert CAL.working_days_between(start, end) == naive_count(start, end)


@given(d=days)
def test_next_working_day_is_the_first_one(d: date) -> None:
    nxt = CAL.next_working_day(d)
    assert CAL.is_working_day(nxt)
    assert nxt >= d
    assert not any(CAL.is_working_day(d + timedelta(days=i)) for i in range((nxt - d).days))
