"""The facts the case rules work on: states, notice states, breaches, case facts.

Kept apart from the rules themselves (``lifecycle`` decides transitions, ``notices``
decides what is reportable) so both can read the same facts without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Literal
from zoneinfo import ZoneInfo

# Norwegian deadlines and meeting times count in Oslo time (DOMAIN.md).
OSLO = ZoneInfo("Europe/Oslo")


def oslo_date(now: datetime) -> date:
    """The calendar date in Europe/Oslo of an aware instant."""
    return now.astimezone(OSLO).date()


class Status(StrEnum):
    NEEDS_REGISTRATION = "needs_registration"
    AWAITING_SUMMONS = "awaiting_summons"
    SUMMONED = "summoned"
    FULFILLED = "fulfilled"
    NONCOMPLIANT = "noncompliant"
    NOTIFIED = "notified"
    WITHDRAWN = "withdrawn"
    CLOSED = "closed"


ENDED = frozenset({Status.WITHDRAWN, Status.CLOSED})

# The one table of what each state is called where people read it (bokmål).
STATUS_WORDS = {
    Status.NEEDS_REGISTRATION: "må registreres",
    Status.AWAITING_SUMMONS: "venter på innkalling",
    Status.SUMMONED: "innkalt",
    Status.FULFILLED: "oppfylt",
    Status.NONCOMPLIANT: "ikke oppfylt",
    Status.NOTIFIED: "varslet påtalemyndigheten",
    Status.WITHDRAWN: "tilbakekalt",
    Status.CLOSED: "avsluttet",
}


class NoticeState(StrEnum):
    NONE = "none"
    DRAFT = "draft"
    QUEUED = "queued"
    SENT = "sent"


BreachType = Literal["ikke_mott", "prove_ikke_tatt"]


@dataclass(frozen=True)
class BreachFact:
    type: BreachType
    on: date


@dataclass(frozen=True)
class Booking:
    """The meeting currently booked: its day, its start if a time was given, and
    whether a written summons for it was recorded (a no-show needs one)."""

    on: date
    starts_at: datetime | None = None
    summons_sent: bool = True


@dataclass(frozen=True)
class CaseFacts:
    """Everything the rules need to know about a case, and nothing personal.

    Besides the counts that decide reportability, it carries the dates every event
    is checked against (the order, the condition period, the testing window, the
    booked meeting) and the history of what was already registered, so the same
    fact told twice is recognised as such.
    """

    status: Status
    required_attendances: int = 1
    attendances: int = 0
    tests_required: int = 0
    tests_taken: int = 0
    no_shows: tuple[date, ...] = ()
    tests_missed: tuple[date, ...] = ()
    notice: NoticeState = NoticeState.NONE
    notice_breaches: tuple[BreachFact, ...] = ()
    ordered_on: date | None = None
    condition_end: date | None = None
    tests_from: date | None = None
    tests_to: date | None = None
    booking: Booking | None = None
    attended_on: tuple[date, ...] = ()
    no_show_on: tuple[date, ...] = ()
    tests_on: tuple[tuple[date, bool], ...] = ()

    @property
    def attendance_fulfilled(self) -> bool:
        return self.attendances >= self.required_attendances

    @property
    def tests_fulfilled(self) -> bool:
        return self.tests_taken >= self.tests_required
