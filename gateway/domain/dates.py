"""Dates and times as staff write them in e-mail commands and on the command line.

Staff type quickly and in Norwegian habits ("3.12", "kl 10.00", "i går"), so the
parser accepts those forms and nothing vaguer: a date it is unsure about is refused
with a Norwegian message that shows the accepted forms, rather than guessed. Error
messages echo what was typed (so staff see their typo) but mask long digit runs, in
case someone pasted an identity number into the date position.
"""

from __future__ import annotations

import re
from datetime import date, time, timedelta

__all__ = ["DateParseError", "parse_staff_date", "parse_staff_time"]

_ISO = re.compile(r"(\d{4})-(\d{1,2})-(\d{1,2})", re.ASCII)
_DMY = re.compile(r"(\d{1,2})\.(\d{1,2})\.(\d{4})", re.ASCII)
# "3.12" and "3.12." (Norwegian ordinal style): no year given.
_DM = re.compile(r"(\d{1,2})\.(\d{1,2})\.?", re.ASCII)
_TIME = re.compile(r"(?:kl\.?\s*)?(\d{1,2})[:.](\d{2})", re.ASCII)
_HOUR_ONLY = re.compile(r"kl\.?\s*(\d{1,2})", re.ASCII)
# An identity number (6+5 digits, maybe split) or any other run of seven or more digits.
_LONG_DIGITS = re.compile(r"\d{6}[ .\-]\d{5}|\d{7,}")
_ECHO_MAX = 40
_HALF_YEAR_DAYS = 183

_RELATIVE_DAYS = {
    "i dag": 0,
    "idag": 0,
    "today": 0,
    "i går": -1,
    "igår": -1,
    "yesterday": -1,
    "i morgen": 1,
    "imorgen": 1,
    "tomorrow": 1,
}


class DateParseError(ValueError):
    """A date or time staff wrote could not be read; the message is for staff (bokmål)."""


def _echo(text: str) -> str:
    """What the user typed, shortened and with long digit runs masked, for messages."""
    shown = _LONG_DIGITS.sub("…", " ".join(text.split()))
    if len(shown) > _ECHO_MAX:
        shown = shown[: _ECHO_MAX - 1] + "…"
    return shown


def _date_error(text: str) -> DateParseError:
    return DateParseError(f"Ukjent dato «{_echo(text)}». Skriv 2026-12-03, 3.12.2026 eller 03.12.")


def _closest_year(day: int, month: int, today: date) -> date | None:
    """The date with this day and month nearest to ``today`` (ties go to the later one).

    "03.12" written in January means last December; written in June it means this
    December. Candidates in the neighbouring years cover every case; an impossible
    date (29.02 outside leap years) drops out, and so does one more than half a year
    away, which only a leap day can be and which is more likely a typo than meant.
    """
    best: date | None = None
    for year in (today.year + 1, today.year, today.year - 1):
        try:
            candidate = date(year, month, day)
        except ValueError:
            continue
        if best is None or abs((candidate - today).days) < abs((best - today).days):
            best = candidate
    if best is None or abs((best - today).days) > _HALF_YEAR_DAYS:
        return None
    return best


def parse_staff_date(text: str, today: date) -> date:
    """Read a date staff wrote; ``today`` is the local (Europe/Oslo) date.

    Accepted: ``2026-12-03``, ``3.12.2026``, ``03.12.2026``, ``03.12``, ``3.12`` (and
    ``3.12.``), and the words ``i dag``/``today``, ``i går``/``yesterday``,
    ``i morgen``/``tomorrow``. Without a year, the year that puts the date closest to
    ``today`` is chosen, so dates up to about six months either way come out right.
    """
    cleaned = " ".join(text.split()).lower()
    if cleaned in _RELATIVE_DAYS:
        return today + timedelta(days=_RELATIVE_DAYS[cleaned])
    try:
        if m := _ISO.fullmatch(cleaned):
            return date(int(m[1]), int(m[2]), int(m[3]))
        if m := _DMY.fullmatch(cleaned):
            return date(int(m[3]), int(m[2]), int(m[1]))
    except ValueError:
        raise _date_error(text) from None
    if m := _DM.fullmatch(cleaned):
        found = _closest_year(int(m[1]), int(m[2]), today)
        if found is not None:
            return found
    raise _date_error(text)


def parse_staff_time(text: str) -> time:
    """Read a time of day: ``10:00``, ``10.00``, ``9:30``, ``kl 10:00``, ``kl. 9``.

    A bare hour is accepted only after "kl", so a number that is part of a place
    ("rom 10") is never taken for a time by a command parser that tries this first.
    """
    cleaned = " ".join(text.split()).lower()
    m = _TIME.fullmatch(cleaned)
    hour, minute = (int(m[1]), int(m[2])) if m else (-1, -1)
    if m is None and (h := _HOUR_ONLY.fullmatch(cleaned)):
        hour, minute = int(h[1]), 0
    if 0 <= hour <= 23 and 0 <= minute <= 59:
        return time(hour, minute)
    raise DateParseError(f"Ukjent klokkeslett «{_echo(text)}». Skriv for eksempel 10:00, 9.30 eller kl 14.")
