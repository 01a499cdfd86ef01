"""The facts the case rules work on: states, notice states, breaches, case facts.

Kept apart from the rules themselves (``lifecycle`` decides transitions, ``notices``
decides what is reportable) so both can read the same facts without importing each
other.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from typing import Literal


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
class CaseFacts:
    """Everything the rules need to know about a case, and nothing personal."""

    status: Status
    required_attendances: int = 1
    attendances: int = 0
    tests_required: int = 0
    tests_taken: int = 0
    no_shows: tuple[date, ...] = ()
    tests_missed: tuple[date, ...] = ()
    notice: NoticeState = NoticeState.NONE
    notice_breaches: tuple[BreachFact, ...] = ()

    @property
    def attendance_fulfilled(self) -> bool:
        return self.attendances >= self.required_attendances

    @property
    def tests_fulfilled(self) -> bool:
        return self.tests_taken >= self.tests_required
