"""The life of a case as a pure state machine.

``apply(facts, event)`` returns the new facts and the effects the caller must carry
out (draft, cancel or queue a notice). It does no I/O, so every rule here is checked
by property-based tests over random event sequences, and the database layer only
persists what this module decided.

States::

    needs_registration ─register─> awaiting_summons ─summoned─> summoned
    summoned ─attended (enough)─> fulfilled        summoned ─attended (more due)─> awaiting_summons
    summoned ─no-show─> noncompliant ─summoned (re-invite)─> summoned
    noncompliant ─notice sent─> notified
    any open state ─tilbakekall─> withdrawn         any open state ─close─> closed

Whether a notice may exist at all is decided by ``gateway.domain.notices``; this
module only asks it. Messages in ``TransitionError`` are Norwegian: staff read them
in command replies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import date, datetime

from gateway.domain import checks, notices
from gateway.domain.checks import AlreadyRecorded, TransitionError
from gateway.domain.facts import ENDED, STATUS_WORDS, Booking, CaseFacts, Status

__all__ = [
    "ENDED",
    "AlreadyRecorded",
    "Booking",
    "CaseFacts",
    "Status",
    "TransitionError",
    "apply",
    "settle",
]


# Events -------------------------------------------------------------------------


@dataclass(frozen=True)
class Registered:
    """A letter-order was completed by staff (needs_registration -> awaiting_summons)."""


@dataclass(frozen=True)
class Summoned:
    """A written summons was sent and a meeting booked (``starts_at`` if a time was set)."""

    meeting_on: date
    starts_at: datetime | None = None
    summons_sent: bool = True


@dataclass(frozen=True)
class Attended:
    on: date


@dataclass(frozen=True)
class NoShow:
    """The person did not come to the booked meeting (``on`` defaults to its day)."""

    on: date | None = None


@dataclass(frozen=True)
class TestTaken:
    on: date


@dataclass(frozen=True)
class TestMissed:
    on: date


@dataclass(frozen=True)
class ConfirmNotice:
    """Staff confirm the drafted notice (or the auto policy's delay ran out)."""


@dataclass(frozen=True)
class NoticeDelivered:
    """The outbox got a receipt for the queued notice."""


@dataclass(frozen=True)
class Amended:
    """An ``endring``: new conditions (None leaves a value as it was)."""

    required_attendances: int | None = None
    tests_required: int | None = None


@dataclass(frozen=True)
class Withdrawn:
    """A ``tilbakekall`` from the prosecuting authority: close without any notice."""


@dataclass(frozen=True)
class Closed:
    reason: str


Event = (
    Registered
    | Summoned
    | Attended
    | NoShow
    | TestTaken
    | TestMissed
    | ConfirmNotice
    | NoticeDelivered
    | Amended
    | Withdrawn
    | Closed
)


# Effects ------------------------------------------------------------------------


@dataclass(frozen=True)
class DraftNotice:
    """Create (or replace) the drafted notice with these breaches."""

    breaches: tuple[notices.BreachFact, ...]


@dataclass(frozen=True)
class CancelNotice:
    """Cancel any unsent notice (draft or queued); the reason is for the audit trail."""

    reason: str


@dataclass(frozen=True)
class QueueNotice:
    """Put the drafted notice in the outbox."""

    breaches: tuple[notices.BreachFact, ...]


Effect = DraftNotice | CancelNotice | QueueNotice


@dataclass(frozen=True)
class Transition:
    facts: CaseFacts
    effects: tuple[Effect, ...] = ()


_OPEN_FOR_MEETINGS = frozenset(
    {
        Status.AWAITING_SUMMONS,
        Status.SUMMONED,
        Status.NONCOMPLIANT,
        Status.FULFILLED,
        Status.NOTIFIED,
    }
)


def settle(facts: CaseFacts, effects: list[Effect] | None = None) -> Transition:
    """Derive the status from the counts and keep an unsent notice honest.

    This is the single place that reconciles an unsent notice with what is
    reportable: whenever the facts change, an unsent notice carrying a breach that is
    no longer reportable is cancelled, and re-drafted with what still is (staff then
    confirm again). So a person who has since attended as required can never be
    reported for not attending.
    """
    effects = [] if effects is None else effects
    reportable = notices.reportable_breaches(facts)
    unsent = facts.notice in (notices.NoticeState.DRAFT, notices.NoticeState.QUEUED)
    if unsent and not set(facts.notice_breaches) <= set(reportable):
        effects.append(CancelNotice("breaches no longer reportable"))
        facts = replace(facts, notice=notices.NoticeState.NONE, notice_breaches=())
        if reportable:
            effects.append(DraftNotice(reportable))
            facts = replace(facts, notice=notices.NoticeState.DRAFT, notice_breaches=reportable)
    if facts.status not in ENDED and facts.status is not Status.NEEDS_REGISTRATION:
        if facts.notice is notices.NoticeState.SENT:
            status = Status.NOTIFIED
        elif reportable:
            status = Status.NONCOMPLIANT
        elif facts.attendance_fulfilled:
            status = Status.FULFILLED
        elif facts.status is Status.SUMMONED:
            status = Status.SUMMONED
        else:
            status = Status.AWAITING_SUMMONS
        facts = replace(facts, status=status)
    return Transition(facts, tuple(effects))


def apply(facts: CaseFacts, event: Event, now: datetime) -> Transition:
    """Apply one event at ``now`` (the injected clock's); raise TransitionError if it
    makes no sense now, AlreadyRecorded if it is already registered."""
    if facts.status in ENDED:
        if isinstance(event, Withdrawn) and facts.status is Status.WITHDRAWN:
            raise AlreadyRecorded("Ordren er allerede tilbakekalt.")
        raise TransitionError(f"Saken er {STATUS_WORDS[facts.status]}; ingen endringer er mulig.")
    effects: list[Effect] = []
    match event:
        case Registered():
            if facts.status is not Status.NEEDS_REGISTRATION:
                raise TransitionError("Saken er allerede registrert.")
            return settle(replace(facts, status=Status.AWAITING_SUMMONS), effects)
        case Withdrawn():
            if facts.notice in (notices.NoticeState.DRAFT, notices.NoticeState.QUEUED):
                effects.append(CancelNotice("order withdrawn"))
            return Transition(replace(_unsent_cleared(facts), status=Status.WITHDRAWN), tuple(effects))
        case Closed(reason=reason):
            if facts.notice in (notices.NoticeState.DRAFT, notices.NoticeState.QUEUED):
                effects.append(CancelNotice(f"case closed: {reason}"))
            return Transition(replace(_unsent_cleared(facts), status=Status.CLOSED), tuple(effects))
        case Amended(required_attendances=req, tests_required=tests):
            facts = replace(
                facts,
                required_attendances=facts.required_attendances if req is None else req,
                tests_required=facts.tests_required if tests is None else tests,
            )
            return settle(facts, effects)
    if facts.status is Status.NEEDS_REGISTRATION:
        raise TransitionError("Saken mangler registrering; fullfør registreringen først.")
    match event:
        case Summoned(meeting_on=meeting_on, starts_at=starts_at, summons_sent=sent):
            if facts.status not in _OPEN_FOR_MEETINGS:
                raise TransitionError("Kan ikke registrere innkalling nå.")
            checks.check_summons(facts, meeting_on, starts_at, now)
            if facts.notice in (notices.NoticeState.DRAFT, notices.NoticeState.QUEUED):
                effects.append(CancelNotice("re-summoned before the notice was sent"))
            # A re-invitation gives the person a new chance: breaches recorded so far are
            # kept in history but no longer drive a notice; a new no-show drafts anew.
            booking = Booking(meeting_on, starts_at, sent)
            return settle(
                replace(
                    _unsent_cleared(facts),
                    status=Status.SUMMONED,
                    no_shows=(),
                    tests_missed=(),
                    booking=booking,
                ),
                effects,
            )
        case Attended(on=on):
            checks.check_attendance(facts, on, now)
            booked = not checks.is_unbooked(facts, on)
            return settle(
                replace(
                    facts,
                    attendances=facts.attendances + 1,
                    attended_on=(*facts.attended_on, on),
                    status=_after_meeting(facts) if booked else facts.status,
                    booking=None if booked else facts.booking,
                ),
                effects,
            )
        case NoShow(on=on):
            day = checks.no_show_day(facts, on, now)
            facts = replace(
                facts,
                no_shows=(*facts.no_shows, day),
                no_show_on=(*facts.no_show_on, day),
                status=_after_meeting(facts),
                booking=None,
            )
            return _draft_if_reportable(facts, effects)
        case TestTaken(on=on):
            checks.check_test(facts, on, True, now)
            return settle(
                replace(facts, tests_taken=facts.tests_taken + 1, tests_on=(*facts.tests_on, (on, True))),
                effects,
            )
        case TestMissed(on=on):
            if facts.tests_required == 0:
                raise TransitionError("Saken har ikke vilkår om rusmiddeltesting.")
            checks.check_test(facts, on, False, now)
            missed = replace(
                facts, tests_missed=(*facts.tests_missed, on), tests_on=(*facts.tests_on, (on, False))
            )
            return _draft_if_reportable(missed, effects)
        case ConfirmNotice():
            checks.check_confirm(facts)
            reportable = notices.reportable_breaches(facts)
            if not reportable:
                raise TransitionError("Det er ingenting å varsle om i denne saken.")
            effects.append(QueueNotice(reportable))
            return settle(
                replace(facts, notice=notices.NoticeState.QUEUED, notice_breaches=reportable), effects
            )
        case NoticeDelivered():
            if facts.notice is not notices.NoticeState.QUEUED:
                raise TransitionError("Ingen varsel er i kø.")
            return settle(replace(facts, notice=notices.NoticeState.SENT, notice_breaches=()), effects)
    raise TransitionError(f"Ukjent hendelse: {type(event).__name__}")


def _after_meeting(facts: CaseFacts) -> Status:
    """A meeting outcome ends the current booking."""
    return Status.AWAITING_SUMMONS if facts.status is Status.SUMMONED else facts.status


def _draft_if_reportable(facts: CaseFacts, effects: list[Effect]) -> Transition:
    reportable = notices.reportable_breaches(facts)
    if reportable and facts.notice in (notices.NoticeState.NONE, notices.NoticeState.DRAFT):
        effects.append(DraftNotice(reportable))
        facts = replace(facts, notice=notices.NoticeState.DRAFT, notice_breaches=reportable)
    return settle(facts, effects)


def _unsent_cleared(facts: CaseFacts) -> CaseFacts:
    """Forget an unsent notice (a sent one stays part of the case's history)."""
    if facts.notice is notices.NoticeState.SENT:
        return facts
    return replace(facts, notice=notices.NoticeState.NONE, notice_breaches=())
