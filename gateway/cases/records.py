"""The case as rows: facts for the state machine, lookups, numbering and the audit.

Everything the other case modules share, and nothing that changes a case's state.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.config import Unit as UnitSettings
from gateway.context import Gateway
from gateway.domain import lifecycle, notices
from gateway.domain.facts import Booking, CaseFacts, Status, oslo_date
from gateway.models import AuditEntry, Case, Meeting, Notice, Sequence, Unit


class CaseNotFound(LookupError):
    pass


# Facts <-> rows -------------------------------------------------------------------


def facts_of(case: Case) -> CaseFacts:
    return CaseFacts(
        status=Status(case.status),
        required_attendances=case.required_attendances,
        attendances=case.attendances,
        tests_required=case.tests_required,
        tests_taken=case.tests_taken,
        no_shows=tuple(date.fromisoformat(d) for d in case.open_no_shows or ()),
        tests_missed=tuple(date.fromisoformat(d) for d in case.open_tests_missed or ()),
        notice=notices.NoticeState(case.notice_state),
        notice_breaches=_unsent_breaches(case),
        ordered_on=case.decided_on or oslo_date(case.created_at),
        condition_end=case.condition_end,
        tests_from=case.tests_from,
        tests_to=case.tests_to,
        booking=_booking(case),
        attended_on=tuple(m.outcome_on for m in case.meetings if m.outcome == "attended" and m.outcome_on),
        no_show_on=tuple(m.outcome_on for m in case.meetings if m.outcome == "no_show" and m.outcome_on),
        tests_on=tuple((t.on, t.taken) for t in case.tests),
    )


def open_meeting(case: Case) -> Meeting | None:
    """The meeting booked and not yet held (at most one: a new summons cancels the old)."""
    open_meetings = [m for m in case.meetings if m.outcome is None]
    return open_meetings[-1] if open_meetings else None


def _booking(case: Case) -> Booking | None:
    meeting = open_meeting(case)
    if meeting is None:
        return None
    summoned = any(s.meeting_id == meeting.id for s in case.summonses)
    return Booking(meeting.starts_on, meeting.starts_at, summons_sent=summoned)


def _unsent_breaches(case: Case) -> tuple[notices.BreachFact, ...]:
    for notice in reversed(case.notices):
        if notice.status in ("draft", "queued"):
            return notice.breach_facts()
    return ()


def store_facts(case: Case, facts: CaseFacts, now: datetime) -> None:
    if case.status != facts.status.value and facts.status in lifecycle.ENDED:
        case.ended_at = now
    case.status = facts.status.value
    case.required_attendances = facts.required_attendances
    case.attendances = facts.attendances
    case.tests_required = facts.tests_required
    case.tests_taken = facts.tests_taken
    case.open_no_shows = [d.isoformat() for d in facts.no_shows]
    case.open_tests_missed = [d.isoformat() for d in facts.tests_missed]
    case.notice_state = facts.notice.value
    case.updated_at = now


def audit(
    gw: Gateway,
    session: Session,
    actor: str,
    action: str,
    case: Case | None,
    detail: str | None = None,
) -> None:
    session.add(
        AuditEntry(
            at=gw.clock.now(),
            actor=actor[:320],
            case_number=case.number if case else None,
            action=action,
            detail=detail[:500] if detail else None,
        )
    )


# Lookup ---------------------------------------------------------------------------


def get_case(session: Session, ref: str | int) -> Case:
    """By number (RUS-2026-0001, case-insensitive) or database id."""
    text = str(ref).strip()
    case = None
    if text.upper().startswith("RUS-"):
        case = session.scalar(select(Case).where(Case.number == text.upper()))
    elif text.isdigit():
        case = session.get(Case, int(text))
    if case is None:
        raise CaseNotFound(text)
    return case


def unit_row(session: Session, unit: UnitSettings) -> Unit:
    """The unit's row, its name and org number kept in step with the configuration.

    Found once per session (a batch of a hundred orders asks a hundred times); the
    session's identity map keeps the object, ``session.info`` only the key.
    """
    known: dict[str, int] = session.info.setdefault("unit_ids", {})
    if unit.code in known:
        cached = session.get(Unit, known[unit.code])
        if cached is not None:
            return cached
    row = session.scalar(select(Unit).where(Unit.code == unit.code))
    if row is None:
        row = Unit(code=unit.code, name=unit.name, org_number=unit.org_number)
        session.add(row)
        session.flush()
    else:
        row.name, row.org_number = unit.name, unit.org_number
    known[unit.code] = row.id
    return row


def unit_settings(gw: Gateway, case: Case) -> UnitSettings:
    return gw.settings.unit(case.unit.code)


def next_case_number(session: Session, year: int) -> str:
    """RUS-<year>-<nnnn>, gap-free per year, safe under concurrent writers."""
    name = f"case:{year}"
    for _ in range(3):
        value = session.scalar(
            update(Sequence)
            .where(Sequence.name == name)
            .values(value=Sequence.value + 1)
            .returning(Sequence.value)
        )
        if value is not None:
            return f"RUS-{year}-{value:04d}"
        try:
            with session.begin_nested():
                session.add(Sequence(name=name, value=1))
            return f"RUS-{year}-0001"
        except IntegrityError:
            continue
    raise RuntimeError("could not allocate a case number")


def current_notice(case: Case, status: str) -> Notice | None:
    for notice in reversed(case.notices):
        if notice.status == status:
            return notice
    return None


def breach_rows(breaches: tuple[notices.BreachFact, ...]) -> list[dict[str, str]]:
    return [{"type": b.type, "on": b.on.isoformat()} for b in breaches]
