"""Case services: every change to a case goes through here, in the caller's transaction.

Each function loads the case's facts, asks the pure state machine
(``gateway.domain.lifecycle``) what happens, stores the new facts and carries out
the effects (notice drafts, cancellations, outbox rows, staff alerts) in the same
transaction, and writes an audit entry. The CLI, staff e-mail commands, intake of
``endring``/``tilbakekall`` and the auto-notice policy all call the same functions,
so there is one behaviour whichever door a change comes through.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, replace
from datetime import date, datetime, time
from typing import TYPE_CHECKING

from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.clock import OSLO, local_today
from gateway.config import Unit as UnitSettings
from gateway.domain import lifecycle, notices
from gateway.domain.identifiers import parse_identity_number
from gateway.domain.lifecycle import CaseFacts, Status, TransitionError
from gateway.models import (
    AuditEntry,
    Case,
    DrugTest,
    Guardian,
    Meeting,
    Notice,
    OutboxItem,
    Person,
    Sequence,
    Summons,
    Unit,
)
from gateway.orders import Order

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

YOUTH_REACTIONS = frozenset({"ungdomsstraff", "ungdomsoppfolging"})


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
    )


def _unsent_breaches(case: Case) -> tuple[notices.BreachFact, ...]:
    for notice in reversed(case.notices):
        if notice.status in ("draft", "queued"):
            return breaches_of(notice)
    return ()


def _store_facts(case: Case, facts: CaseFacts, now: datetime) -> None:
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
    row = session.scalar(select(Unit).where(Unit.code == unit.code))
    if row is None:
        row = Unit(code=unit.code, name=unit.name, org_number=unit.org_number)
        session.add(row)
        session.flush()
    else:
        row.name, row.org_number = unit.name, unit.org_number
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


# Creating cases ----------------------------------------------------------------


def _minor(order_birth: date | None, reaction: str | None, today: date) -> bool:
    if order_birth is not None:
        age = (
            today.year - order_birth.year - ((today.month, today.day) < (order_birth.month, order_birth.day))
        )
        return age < 18
    return reaction in YOUTH_REACTIONS


def _address_json(address: object | None) -> str | None:
    if address is None:
        return None
    lines = getattr(address, "lines", ())
    return json.dumps(
        {
            "lines": list(lines),
            "postal_code": getattr(address, "postal_code", None),
            "city": getattr(address, "city", None),
        },
        ensure_ascii=False,
    )


def _new_case(gw: Gateway, session: Session, unit: UnitSettings, status: Status, **fields: object) -> Case:
    """What every new case starts with: a number, its unit, the first-meeting target
    in working days, and empty facts for the state machine."""
    now = gw.clock.now()
    today = local_today(now)
    return Case(
        number=next_case_number(session, today.year),
        unit_id=unit_row(session, unit).id,
        status=status.value,
        created_at=now,
        updated_at=now,
        first_meeting_target=gw.calendar.add_working_days(
            today, gw.settings.gateway.first_meeting_target_working_days
        ),
        open_no_shows=[],
        open_tests_missed=[],
        notice_state=notices.NoticeState.NONE.value,
        **fields,
    )


def open_case_from_order(gw: Gateway, session: Session, order: Order, unit: UnitSettings) -> Case:
    """A new case from a valid ``ny`` order (intake has checked it)."""
    assert order.person is not None
    now = gw.clock.now()
    today = local_today(now)
    birth = order.person.birth_date or parse_identity_number(order.person.national_id).birth_date()
    deadline = gw.calendar.next_working_day(order.attendance_deadline) if order.attendance_deadline else None
    case = _new_case(
        gw,
        session,
        unit,
        Status.AWAITING_SUMMONS,
        order_id=order.order_id,
        sender_name=order.sender.name,
        sender_org_number=order.sender.org_number,
        reply_type=order.sender.reply_type,
        reply_address=order.sender.reply_address,
        kommunenummer=order.recipient_kommunenummer,
        case_reference=order.case_reference,
        reaction=order.reaction,
        decided_on=order.decided_on,
        condition_end=order.condition_end,
        attendance_deadline=deadline,
        minor=_minor(birth, order.reaction, today),
        remark=order.remark,
        required_attendances=order.required_attendances or 1,
        tests_required=order.testing.count if order.testing else 0,
        tests_from=order.testing.from_date if order.testing else None,
        tests_to=order.testing.to_date if order.testing else None,
    )
    p = order.person
    case.person = Person(
        national_id=p.national_id,
        national_id_hash=gw.cipher.keyed_hash(p.national_id),
        first_name=p.first_name,
        last_name=p.last_name,
        birth_date=birth.isoformat() if birth else None,
        address=_address_json(p.address),
        phone=p.phone,
        email=p.email,
        guardians=[
            Guardian(
                first_name=g.first_name,
                last_name=g.last_name,
                phone=g.phone,
                email=g.email,
                address=_address_json(g.address),
            )
            for g in p.guardians
        ],
    )
    session.add(case)
    session.flush()
    audit(gw, session, "system:intake", "case_opened", case, f"order {order.order_id}")
    log.info("case %s opened for unit %s from order %s", case.number, unit.code, order.order_id)
    from gateway import staff

    staff.alert_new_case(gw, session, case)
    _warn_same_person(gw, session, case)
    return case


def open_letter_case(
    gw: Gateway,
    session: Session,
    unit: UnitSettings,
    suggestions: dict[str, list[str]],
    sender: str | None,
) -> Case:
    """A letter (no structured order) from an allowed police sender: staff complete it."""
    case = _new_case(
        gw,
        session,
        unit,
        Status.NEEDS_REGISTRATION,
        suggestions=json.dumps(suggestions, ensure_ascii=False),
        required_attendances=1,
    )
    session.add(case)
    session.flush()
    audit(gw, session, "system:intake", "letter_received", case, "needs registration")
    from gateway import staff

    staff.alert_needs_registration(gw, session, case)
    return case


def _warn_same_person(gw: Gateway, session: Session, case: Case) -> None:
    assert case.person is not None
    others = session.scalars(
        select(Case.number)
        .join(Person)
        .where(
            Person.national_id_hash == case.person.national_id_hash,
            Case.id != case.id,
            Case.status.not_in([s.value for s in lifecycle.ENDED]),
        )
    ).all()
    if others:
        from gateway import staff

        staff.alert_same_person(gw, session, case, list(others))


@dataclass(frozen=True)
class Registration:
    national_id: str
    first_name: str
    last_name: str
    case_reference: str
    condition_end: date
    sender_org_number: str | None = None
    reaction: str | None = None
    attendance_deadline: date | None = None
    required_attendances: int = 1
    tests_required: int = 0
    birth_date: date | None = None


def register(gw: Gateway, session: Session, case: Case, reg: Registration, actor: str) -> None:
    """Complete a letter-case with what staff read in the letter."""
    ident = parse_identity_number(reg.national_id)  # raises InvalidIdentityNumber
    today = local_today(gw.clock.now())
    birth = reg.birth_date or ident.birth_date()
    case.case_reference = reg.case_reference
    case.condition_end = reg.condition_end
    case.sender_org_number = reg.sender_org_number
    case.reaction = reg.reaction
    case.attendance_deadline = (
        gw.calendar.next_working_day(reg.attendance_deadline) if reg.attendance_deadline else None
    )
    case.minor = _minor(birth, reg.reaction, today)
    case.person = Person(
        national_id=ident.value,
        national_id_hash=gw.cipher.keyed_hash(ident.value),
        first_name=reg.first_name,
        last_name=reg.last_name,
        birth_date=birth.isoformat() if birth else None,
    )
    _apply(gw, session, case, lifecycle.Amended(reg.required_attendances, reg.tests_required), actor)
    _apply(gw, session, case, lifecycle.Registered(), actor)
    case.suggestions = None
    session.flush()
    _warn_same_person(gw, session, case)


# Events ---------------------------------------------------------------------------


def _apply(
    gw: Gateway,
    session: Session,
    case: Case,
    event: lifecycle.Event,
    actor: str,
    detail: str | None = None,
) -> lifecycle.Transition:
    now = gw.clock.now()
    transition = lifecycle.apply(facts_of(case), event)
    _store_facts(case, transition.facts, now)
    for effect in transition.effects:
        match effect:
            case lifecycle.DraftNotice(breaches=breaches):
                _draft_notice(gw, session, case, breaches)
            case lifecycle.CancelNotice(reason=reason):
                _cancel_notices(gw, session, case, reason)
            case lifecycle.QueueNotice(breaches=breaches):
                _queue_notice(gw, session, case, breaches, actor)
    name = type(event).__name__
    audit(gw, session, actor, _snake(name), case, detail)
    log.info("case %s: %s by %s -> %s", case.number, _snake(name), _actor_kind(actor), case.status)
    return transition


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _actor_kind(actor: str) -> str:
    """Log who acted without logging a staff member's address."""
    return actor if actor.startswith(("system:", "cli:")) else "staff"


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
    """Written summons sent today; a meeting is booked (a re-summons after a no-show too)."""
    for open_meeting in case.meetings:
        if open_meeting.outcome is None:
            open_meeting.outcome = "cancelled"
            open_meeting.outcome_on = local_today(gw.clock.now())
    _apply(
        gw,
        session,
        case,
        lifecycle.Summoned(meeting_on),
        actor,
        f"meeting {meeting_on.isoformat()}",
    )
    meeting = Meeting(
        case_id=case.id, starts_on=meeting_on, starts_at=_meeting_at(meeting_on, at), place=place
    )
    case.meetings.append(meeting)
    session.flush()
    case.summonses.append(
        Summons(
            case_id=case.id,
            sent_on=local_today(gw.clock.now()),
            channel=channel,
            meeting_id=meeting.id,
        )
    )
    case.next_meeting_at = meeting.starts_at or datetime.combine(meeting_on, time(0), tzinfo=OSLO)
    return meeting


def _close_meeting(gw: Gateway, case: Case, on: date, outcome: str) -> None:
    open_meetings = [m for m in case.meetings if m.outcome is None]
    meeting = open_meetings[-1] if open_meetings else None
    if meeting is None:
        meeting = Meeting(case_id=case.id, starts_on=on)
        case.meetings.append(meeting)
    meeting.outcome, meeting.outcome_on = outcome, on
    case.next_meeting_at = None


def attended(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    _apply(gw, session, case, lifecycle.Attended(on), actor)
    _close_meeting(gw, case, on, "attended")


def no_show(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    _apply(gw, session, case, lifecycle.NoShow(on), actor)
    _close_meeting(gw, case, on, "no_show")


def test_taken(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    _apply(gw, session, case, lifecycle.TestTaken(on), actor)
    case.tests.append(DrugTest(case_id=case.id, on=on, taken=True))


def test_missed(gw: Gateway, session: Session, case: Case, on: date, actor: str) -> None:
    _apply(gw, session, case, lifecycle.TestMissed(on), actor)
    case.tests.append(DrugTest(case_id=case.id, on=on, taken=False))


def confirm_notice(gw: Gateway, session: Session, case: Case, actor: str) -> Notice:
    draft = _current_notice(case, "draft")
    if draft is None:
        raise TransitionError("Det finnes ikke noe utkast til varsel å sende.")
    _route(gw, case)  # refuse early if the notice cannot be routed
    draft.confirmed_by, draft.confirmed_at = actor, gw.clock.now()
    _apply(gw, session, case, lifecycle.ConfirmNotice(), actor)
    return draft


def close(gw: Gateway, session: Session, case: Case, reason: str, actor: str) -> None:
    case.close_reason = reason[:200]
    _apply(gw, session, case, lifecycle.Closed(reason), actor, reason)
    for meeting in case.meetings:
        if meeting.outcome is None:
            meeting.outcome = "cancelled"
    case.next_meeting_at = None


def withdraw(gw: Gateway, session: Session, case: Case, order_id: str) -> None:
    case.close_reason = "tilbakekalt av påtalemyndigheten"
    _apply(gw, session, case, lifecycle.Withdrawn(), "system:intake", f"order {order_id}")
    for meeting in case.meetings:
        if meeting.outcome is None:
            meeting.outcome = "cancelled"
    case.next_meeting_at = None
    from gateway import staff

    staff.alert_withdrawn(gw, session, case)


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
    _apply(
        gw,
        session,
        case,
        lifecycle.Amended(order.required_attendances, order.testing.count if order.testing else None),
        "system:intake",
        f"order {order.order_id}",
    )
    from gateway import staff

    staff.alert_amended(gw, session, case)


# Notices --------------------------------------------------------------------------


def _current_notice(case: Case, status: str) -> Notice | None:
    for notice in reversed(case.notices):
        if notice.status == status:
            return notice
    return None


def _breach_rows(breaches: tuple[notices.BreachFact, ...]) -> list[dict[str, str]]:
    return [{"type": b.type, "on": b.on.isoformat()} for b in breaches]


def breaches_of(notice: Notice) -> tuple[notices.BreachFact, ...]:
    return tuple(notices.BreachFact(b["type"], date.fromisoformat(b["on"])) for b in notice.breaches)  # type: ignore[arg-type]


def _draft_notice(
    gw: Gateway, session: Session, case: Case, breaches: tuple[notices.BreachFact, ...]
) -> None:
    now = gw.clock.now()
    unit = unit_settings(gw, case)
    draft = _current_notice(case, "draft")
    if draft is None:
        draft = Notice(
            case_id=case.id,
            message_id=str(uuid.uuid4()),
            status="draft",
            breaches=[],
            created_at=now,
        )
        case.notices.append(draft)
    draft.breaches = _breach_rows(breaches)
    if unit.notice_policy == "auto":
        draft.auto_send_on = gw.calendar.add_working_days(
            local_today(now), unit.auto_notice_after_working_days
        )
    session.flush()
    from gateway import staff

    staff.alert_notice_drafted(gw, session, case, draft)


def _cancel_notices(gw: Gateway, session: Session, case: Case, reason: str) -> None:
    from gateway import outbox

    for notice in case.notices:
        if notice.status in ("draft", "queued"):
            notice.status, notice.cancel_reason = "cancelled", reason[:200]
            outbox.cancel_for_notice(session, notice.id, reason)
            log.info("case %s: notice %s cancelled (%s)", case.number, notice.message_id, reason)


def _route(gw: Gateway, case: Case) -> tuple[str, tuple[str, ...]]:
    """Which channel and address a notice for this case goes to."""
    unit = unit_settings(gw, case)
    district = unit.district_for(case.sender_org_number)
    if district is None:
        raise TransitionError(
            "Ingen mottaker for varsel er satt opp for dette politidistriktet; kontakt driftsansvarlig."
        )
    address = case.reply_address or district.notice_address or district.org_number
    return district.notice_channel, (address,)


def _queue_notice(
    gw: Gateway, session: Session, case: Case, breaches: tuple[notices.BreachFact, ...], actor: str
) -> None:
    from gateway import outbox, police

    notice = _current_notice(case, "draft")
    assert notice is not None
    notice.status = "queued"
    notice.breaches = _breach_rows(breaches)
    channel, recipients = _route(gw, case)
    earlier = session.scalar(
        select(func.count()).select_from(OutboxItem).where(OutboxItem.notice_id == notice.id)
    )
    key = f"notice:{notice.message_id}" + (f":retry{earlier}" if earlier else "")
    message = police.build_notice_message(gw, case, notice, recipients, key)
    enqueued = outbox.enqueue(
        gw, session, message, kind="notice", channel=channel, case_id=case.id, notice_id=notice.id
    )
    if enqueued is None:
        log.warning("case %s: notice %s was already in the outbox", case.number, key)


def notice_may_go(gw: Gateway, session: Session, item: OutboxItem) -> bool:
    """The last gate before the police: is every breach still reportable right now?"""
    notice = session.get(Notice, item.notice_id) if item.notice_id else None
    case = session.get(Case, item.case_id) if item.case_id else None
    if notice is None or case is None or notice.status != "queued":
        log.warning("outbox %s: notice no longer queued; not sending", item.id)
        return False
    if not notices.may_send(facts_of(case), breaches_of(notice)):
        notice.status, notice.cancel_reason = "cancelled", "no longer reportable at send time"
        facts = replace(facts_of(case), notice=notices.NoticeState.NONE, notice_breaches=())
        _store_facts(
            case,
            lifecycle.settle(facts).facts if facts.status not in lifecycle.ENDED else facts,
            gw.clock.now(),
        )
        log.warning("case %s: notice %s no longer reportable; cancelled", case.number, notice.message_id)
        audit(
            gw,
            session,
            "system:outbox",
            "notice_cancelled",
            case,
            "no longer reportable at send time",
        )
        return False
    return True


def notice_delivered(gw: Gateway, session: Session, notice: Notice, receipt: str | None) -> None:
    """Record a delivery. A delivery is a fact: if the case changed while the notice was
    in flight (attendance registered, closed), the delivery is still recorded, and staff
    are told, rather than the state machine refusing and the send being repeated."""
    case = session.get_one(Case, notice.case_id)
    notice.status, notice.sent_at, notice.receipt = "sent", gw.clock.now(), receipt
    facts = facts_of(case)
    if facts.notice is notices.NoticeState.QUEUED and facts.status not in lifecycle.ENDED:
        _apply(gw, session, case, lifecycle.NoticeDelivered(), "system:outbox", receipt)
    else:
        facts = replace(facts, notice=notices.NoticeState.SENT, notice_breaches=())
        _store_facts(
            case,
            lifecycle.settle(facts).facts if facts.status not in lifecycle.ENDED else facts,
            gw.clock.now(),
        )
        audit(gw, session, "system:outbox", "notice_delivered_after_change", case, receipt)
        log.warning("case %s: notice %s was delivered after the case changed", case.number, notice.message_id)
    from gateway import staff

    staff.alert_notice_sent(gw, session, case, notice)


def notice_failed(gw: Gateway, session: Session, notice: Notice, reason: str) -> None:
    """A dead notice goes back to draft (same MeldingId) so staff can fix the cause
    and confirm again; the police side dedupes on MeldingId."""
    case = session.get_one(Case, notice.case_id)
    if case.status not in (s.value for s in lifecycle.ENDED) and case.notice_state == "queued":
        notice.status = "draft"
        case.notice_state = notices.NoticeState.DRAFT.value
    else:
        notice.status = "dead"
    notice.cancel_reason = reason[:200]
    audit(gw, session, "system:outbox", "notice_failed", case, reason)
    from gateway import staff

    staff.alert_notice_failed(gw, session, case, reason)


def auto_confirm_due(gw: Gateway, session: Session) -> list[str]:
    """Units with the ``auto`` policy: confirm drafts whose waiting time has run out."""
    today = local_today(gw.clock.now())
    done = []
    for notice in session.scalars(
        select(Notice).where(
            Notice.status == "draft", Notice.auto_send_on.is_not(None), Notice.auto_send_on <= today
        )
    ):
        case = session.get_one(Case, notice.case_id)
        try:
            confirm_notice(gw, session, case, "system:auto-policy")
            done.append(case.number)
        except TransitionError as exc:
            log.warning("case %s: auto notice not sent: %s", case.number, exc)
            notice.auto_send_on = None
    return done
