"""What staff and the prosecuting authority do to an open case after it is opened:
summons and meetings, attendance, tests, the notice's confirmation, closing,
withdrawal and amendment. Each goes through ``apply_event``.
"""

from __future__ import annotations

from datetime import date, datetime, time

from sqlalchemy.orm import Session

from gateway.cases.records import current_notice, facts_of, open_meeting
from gateway.cases.transitions import apply_event, route
from gateway.clock import OSLO, local_today
from gateway.context import Gateway
from gateway.domain import checks, lifecycle
from gateway.domain.closing import WITHDRAWN_BY_POLICE, CloseReason
from gateway.domain.lifecycle import TransitionError
from gateway.effects import CaseAmended, CaseWithdrawn
from gateway.messages.orders import Order
from gateway.models import Case, DrugTest, Meeting, Notice, Summons


def _meeting_at(on: date, at: time | None) -> datetime | None:
    if at is None:
        return None
    return datetime.combine(on, at, tzinfo=OSLO)


def summon(
    gw: Gateway,
    session: Session,
    case: Case,
    meeting_on: date,
    at: time | None,
    place: str | None,
    actor: str,
    channel: str = "brev",
) -> Meeting:
    """Written summons sent today; a meeting is booked (a re-summons after a no-show too).

    The state machine checks the booking first (in the future, inside the condition
    period, not the same booking again); only then is the old booking cancelled.
    """
    starts_at = _meeting_at(meeting_on, at)
    apply_event(
        gw,
        session,
        case,
        lifecycle.Summoned(meeting_on, starts_at),
        actor,
        f"meeting {meeting_on.isoformat()}" + (f" {at:%H:%M}" if at else ""),
    )
    today = local_today(gw.clock.now())
    for earlier in case.meetings:
        if earlier.outcome is None:
            earlier.outcome, earlier.outcome_on = "cancelled", today
    meeting = Meeting(case_id=case.id, starts_on=meeting_on, starts_at=starts_at, place=place)
    case.meetings.append(meeting)
    session.flush()
    case.summonses.append(Summons(case_id=case.id, sent_on=today, channel=channel, meeting_id=meeting.id))
    case.next_meeting_at = starts_at or datetime.combine(meeting_on, time(0), tzinfo=OSLO)
    return meeting


def attended(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> bool:
    """Register an attendance on ``on``; returns True when no meeting was booked that day.

    An attendance at a meeting the gateway did not book (arranged by phone, say) is
    allowed on purpose, and the audit says so.
    """
    unbooked = checks.is_unbooked(facts_of(case), on)
    detail = "attendance without a meeting booked for that day" if unbooked else None
    apply_event(gw, session, case, lifecycle.Attended(on), actor, detail)
    meeting = None if unbooked else open_meeting(case)
    if meeting is None:
        meeting = Meeting(case_id=case.id, starts_on=on)
        case.meetings.append(meeting)
    else:
        case.next_meeting_at = None
    meeting.outcome, meeting.outcome_on = "attended", on
    return unbooked


def no_show(gw: Gateway, session: Session, case: Case, on: date | None, actor: str) -> date:
    """Register that the person missed the booked meeting; returns its day."""
    transition = apply_event(gw, session, case, lifecycle.NoShow(on), actor)
    day = transition.facts.no_show_on[-1]
    meeting = open_meeting(case)
    assert meeting is not None  # the state machine refuses a no-show without a booking
    meeting.outcome, meeting.outcome_on = "no_show", day
    case.next_meeting_at = None
    return day


def test_taken(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    apply_event(gw, session, case, lifecycle.TestTaken(on), actor)
    case.tests.append(DrugTest(case_id=case.id, on=on, taken=True))


def test_missed(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    apply_event(gw, session, case, lifecycle.TestMissed(on), actor)
    case.tests.append(DrugTest(case_id=case.id, on=on, taken=False))


def confirm_notice(gw: Gateway, session: Session, case: Case, actor: str) -> Notice:
    checks.check_confirm(facts_of(case))
    draft = current_notice(case, "draft")
    if draft is None:
        raise TransitionError("Det finnes ikke noe utkast til varsel å sende.")
    route(gw, case)  # refuse early if the notice cannot be routed
    draft.confirmed_by, draft.confirmed_at = actor, gw.clock.now()
    apply_event(gw, session, case, lifecycle.ConfirmNotice(), actor)
    return draft


def close(gw: Gateway, session: Session, case: Case, reason: CloseReason, actor: str) -> None:
    """Close the case for one of the fixed reasons; a comment is stored encrypted only."""
    case.close_reason, case.close_comment = reason.code, reason.comment
    apply_event(gw, session, case, lifecycle.Closed(reason.code), actor, f"reason {reason.code}")
    for meeting in case.meetings:
        if meeting.outcome is None:
            meeting.outcome = "cancelled"
    case.next_meeting_at = None


def withdraw(gw: Gateway, session: Session, case: Case, order_id: str) -> None:
    case.close_reason = WITHDRAWN_BY_POLICE
    apply_event(gw, session, case, lifecycle.Withdrawn(), "system:intake", f"order {order_id}")
    for meeting in case.meetings:
        if meeting.outcome is None:
            meeting.outcome = "cancelled"
    case.next_meeting_at = None
    gw.emit(session, CaseWithdrawn(case))


def amend(gw: Gateway, session: Session, case: Case, order: Order) -> None:
    """An ``endring``: the newest conditions win; the state machine re-derives status."""
    if order.condition_end:
        case.condition_end = order.condition_end
    if order.attendance_deadline:
        case.attendance_deadline = gw.calendar.next_working_day(order.attendance_deadline)
    if order.testing:
        case.tests_from, case.tests_to = order.testing.from_date, order.testing.to_date
    if order.case_reference:
        case.case_reference = order.case_reference
    if order.remark:
        case.remark = order.remark
    apply_event(
        gw,
        session,
        case,
        lifecycle.Amended(order.required_attendances, order.testing.count if order.testing else None),
        "system:intake",
        f"order {order.order_id}",
    )
    gw.emit(session, CaseAmended(case))
