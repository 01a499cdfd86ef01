"""Opening a case: from a structured order, from a police letter, by registration.

Each path gives the case its number, unit and first-meeting target, stores the
person encrypted (with the keyed hash that finds other open cases of the same
person) and emits what happened, for the staff alerts to react to.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import date

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.records import audit, next_case_number, unit_row
from gateway.cases.transitions import apply_event
from gateway.clock import local_today
from gateway.config import Unit as UnitSettings
from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.domain import lifecycle, notices
from gateway.domain.identifiers import parse_identity_number
from gateway.domain.lifecycle import Status
from gateway.effects import CaseOpened, LetterReceived, SamePersonFound
from gateway.messages.orders import Order
from gateway.models import Case, Guardian, Person

log = logging.getLogger(__name__)

YOUTH_REACTIONS = frozenset({"ungdomsstraff", "ungdomsoppfolging"})


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
        unit=unit_row(session, unit),
        status=status.value,
        created_at=now,
        updated_at=now,
        first_meeting_target=gw.calendar.add_working_days(
            today, gw.settings.gateway.first_meeting_target_working_days
        ),
        open_no_shows=[],
        open_tests_missed=[],
        notice_state=notices.NoticeState.NONE.value,
        # A new case has none of these yet: empty, loaded collections spare the alert
        # and the state machine a SELECT each (a backlog takes in thousands of cases).
        meetings=[],
        summonses=[],
        tests=[],
        notices=[],
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
    log_after_commit(
        session,
        log,
        logging.INFO,
        "case %s opened for unit %s from order %s",
        case.number,
        unit.code,
        order.order_id,
        extra={"case": case.number, "outcome": "opened"},
    )
    gw.emit(session, CaseOpened(case))
    _warn_same_person(gw, session, case)
    return case


def open_letter_case(
    gw: Gateway,
    session: Session,
    unit: UnitSettings,
    suggestions: dict[str, list[str]],
    sender: str | None,
    original: bytes | None = None,
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
    gw.emit(session, LetterReceived(case, original))
    return case


def _warn_same_person(gw: Gateway, session: Session, case: Case) -> None:
    assert case.person is not None
    others = session.scalars(
        select(Case.number)
        .join(Person)
        .where(
            # every key's hash: between ``key rotate`` and the end of ``key reencrypt``
            # older cases still carry a hash under an older key
            Person.national_id_hash.in_(gw.cipher.keyed_hashes(case.person.national_id or "")),
            Case.id != case.id,
            Case.status.not_in([s.value for s in lifecycle.ENDED]),
        )
    ).all()
    if others:
        gw.emit(session, SamePersonFound(case, tuple(others)))


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
    apply_event(gw, session, case, lifecycle.Amended(reg.required_attendances, reg.tests_required), actor)
    apply_event(gw, session, case, lifecycle.Registered(), actor)
    case.suggestions = None
    session.flush()
    _warn_same_person(gw, session, case)
