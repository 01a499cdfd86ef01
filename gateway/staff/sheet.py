"""The case sheet: everything staff may see about a case, never the identity number."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from gateway.models import Case
from gateway.texts import nb_time


@dataclass(frozen=True)
class Sheet:
    """The case sheet for staff: everything useful, never the identity number."""

    number: str
    status: str
    name: str
    minor: bool
    case_reference: str | None
    reaction: str | None
    condition_end: date | None
    attendance_deadline: date | None
    first_meeting_target: date | None
    required_attendances: int
    attendances: int
    tests_required: int
    meetings: list[tuple[date, str | None, str]]
    tests: list[tuple[date, bool]]
    notices: list[tuple[str, str]]
    guardians: list[str]


def case_sheet(case: Case) -> Sheet:
    person = case.person
    name = person.full_name if person else "(ikke registrert)"
    return Sheet(
        number=case.number,
        status=case.status,
        name=name or "(ukjent)",
        minor=case.minor,
        case_reference=case.case_reference,
        reaction=case.reaction,
        condition_end=case.condition_end,
        attendance_deadline=case.attendance_deadline,
        first_meeting_target=case.first_meeting_target,
        required_attendances=case.required_attendances,
        attendances=case.attendances,
        tests_required=case.tests_required,
        meetings=[
            (m.starts_on, nb_time(m.starts_at) if m.starts_at else None, m.outcome or "avtalt")
            for m in case.meetings
        ],
        tests=[(t.on, t.taken) for t in case.tests],
        notices=[(n.message_id, n.status) for n in case.notices],
        guardians=[g.full_name for g in (person.guardians if person else [])],
    )
