"""Norwegian working days, for deadlines counted in working days.

A deadline counted in working days skips Saturdays, Sundays and the Norwegian public
holidays (helligdagsloven and 1 and 17 May); a legal deadline that lands on a day off
moves forward to the next working day. The holiday dates come from the ``holidays``
package, so moveable feasts (Easter, Ascension, Whitsun) are never hand-computed here.

The ``holidays`` Norway calendar can count every Sunday as a holiday
(``include_sundays``; the default has changed between releases). Weekends are excluded
by weekday here before the holiday set is consulted, and only weekday holidays are
kept, so the answer is the same whichever default the installed version has.
"""

from __future__ import annotations

import threading
from datetime import date, timedelta

__all__ = ["WorkingCalendar"]

_SATURDAY = 5


def _is_weekend(d: date) -> bool:
    return d.weekday() >= _SATURDAY


def _weekdays_up_to(d: date) -> int:
    """Mon-Fri days from a fixed Monday (ordinal 1 is 0001-01-01, a Monday) up to ``d``.

    Counting through a closed form instead of walking day by day keeps
    ``working_days_between`` cheap for spans of many years (condition periods).
    """
    days = d.toordinal()  # days in [0001-01-01, d]
    full_weeks, rest = divmod(days, 7)
    return full_weeks * 5 + min(rest, 5)


class WorkingCalendar:
    """Norwegian working days; holiday sets are computed once per year and cached.

    Safe to share between threads: the cache is filled under a lock and a year's set
    never changes once computed.
    """

    def __init__(self) -> None:
        self._by_year: dict[int, frozenset[date]] = {}
        self._lock = threading.Lock()

    def _weekday_holidays(self, year: int) -> frozenset[date]:
        cached = self._by_year.get(year)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._by_year.get(year)
            if cached is None:
                # Imported on first use: the package costs about 100 ms to load, and most
                # commands (a listing, a case sheet) never count a working day.
                import holidays

                calendar = holidays.country_holidays("NO", years=year)
                cached = frozenset(d for d in calendar if d.year == year and not _is_weekend(d))
                self._by_year[year] = cached
            return cached

    def is_working_day(self, d: date) -> bool:
        """Not a Saturday or Sunday and not a Norwegian public holiday."""
        return not _is_weekend(d) and d not in self._weekday_holidays(d.year)

    def next_working_day(self, d: date) -> date:
        """``d`` itself if it is a working day, else the first working day after it."""
        while not self.is_working_day(d):
            d += timedelta(days=1)
        return d

    def add_working_days(self, d: date, n: int) -> date:
        """The ``n``-th working day after ``d``; ``n == 0`` gives ``next_working_day(d)``.

        ``d`` itself never counts, whether or not it is a working day: a deadline of
        "5 working days" from an order received on a Saturday ends on Friday.
        """
        if n < 0:
            raise ValueError("n must be zero or positive")
        if n == 0:
            return self.next_working_day(d)
        remaining = n
        while remaining:
            d += timedelta(days=1)
            if self.is_working_day(d):
                remaining -= 1
        return d

    def working_days_between(self, start: date, end: date) -> int:
        """Working days in the half-open span (start, end]; 0 if ``end <= start``."""
        if end <= start:
            return 0
        weekdays = _weekdays_up_to(end) - _weekdays_up_to(start)
        holidays_in_span = sum(
            1
            for year in range(start.year, end.year + 1)
            for h in self._weekday_holidays(year)
            if start < h <= end
        )
        return weekdays - holidays_in_span
