"""The notice of non-compliance as it leaves for the prosecuting authority.

The structured XML (``schemas/melding-1.xsd``) is the attachment; the text is a
short letter a jurist can act on without tools: who, which order (their case
reference, our reference, the order's date), what was missed (day, time and place),
which written summonses were sent and how, and whom to contact. The identity number
is only in the XML, never in the subject or the text.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from sqlalchemy import select
from sqlalchemy.orm import object_session

from gateway.config import Unit as UnitSettings
from gateway.context import Gateway
from gateway.delivery.notice_xml import Breach, NoticeDocument, SummonsRecord, build_notice_xml
from gateway.models import Case, Meeting, Notice, OrderRecord
from gateway.ports import Attachment, OutboundMessage
from gateway.texts import (
    join_nb,
    nb_date,
    nb_day,
    nb_meeting,
    nb_time,
    nb_weekday,
    reaction_nb,
    render,
    summons_channel_nb,
)

# The XML's Beskrivelse of each breach (the letter describes each one in full).
BREACH_TEXT = {
    "ikke_mott": "Møtte ikke til samtale i rådgivende enhet for russaker.",
    "prove_ikke_tatt": "Avla ikke rusmiddelprøve som pålagt.",
}

# What the condition is called: in the subject, and in the letter's first sentence.
_CONDITION = {"ikke_mott": "oppmøte", "prove_ikke_tatt": "rusmiddeltesting"}
_CONDITION_LONG = {"ikke_mott": "å møte til samtale", "prove_ikke_tatt": "rusmiddeltesting"}


@dataclass(frozen=True)
class NoticeText:
    """What the letter says, apart from the XML: subject and body."""

    subject: str
    body: str


def _missed_meeting(case: Case, on: date) -> Meeting | None:
    """The meeting missed on ``on``: registered as a no-show, or (while the no-show
    is being registered, when the draft is made) the booked one of that day."""
    for meeting in reversed(case.meetings):
        if meeting.outcome == "no_show" and on in (meeting.outcome_on, meeting.starts_on):
            return meeting
    for meeting in reversed(case.meetings):
        if meeting.outcome is None and meeting.starts_on == on:
            return meeting
    return None


def _breach_line(case: Case, breach: Breach) -> str:
    if breach.type == "ikke_mott":
        meeting = _missed_meeting(case, breach.on)
        if meeting is None:
            return f"Møtte ikke til avtalt samtale {nb_weekday(breach.on)}."
        when = nb_weekday(meeting.starts_on)
        if meeting.starts_at is not None:
            when += f" kl. {nb_time(meeting.starts_at)}"
        if meeting.place:
            when += f", {meeting.place}"
        return f"Møtte ikke til avtalt samtale {when}."
    return f"Tok ikke pålagt rusmiddelprøve {nb_weekday(breach.on)}."


def _summons_lines(case: Case) -> list[str]:
    meetings = {m.id: m for m in case.meetings}
    lines = []
    for summons in case.summonses:
        line = f"{summons_channel_nb(summons.channel).capitalize()} sendt {nb_date(summons.sent_on)}"
        meeting = meetings.get(summons.meeting_id) if summons.meeting_id else None
        if meeting is not None:
            line += f", med innkalling til samtale {nb_meeting(meeting.starts_on, meeting.starts_at)}"
        lines.append(line + ".")
    return lines


def _order_date(case: Case) -> datetime | None:
    session = object_session(case)
    if session is None or case.order_id is None:
        return None
    return session.scalar(select(OrderRecord.sent_at).where(OrderRecord.order_id == case.order_id))


def _addressee(unit: UnitSettings, case: Case) -> str:
    district = unit.district_for(case.sender_org_number)
    name = district.name if district else case.sender_name
    return f"{name}, påtalemyndigheten" if name else "Påtalemyndigheten"


def _contact(unit: UnitSettings) -> str | None:
    parts = [unit.contact_name]
    if unit.contact_phone:
        parts.append(f"telefon {unit.contact_phone}")
    if unit.contact_email:
        parts.append(f"e-post {unit.contact_email}")
    shown = [p for p in parts if p]
    return ", ".join(shown) if shown else None


def notice_text(
    gw: Gateway,
    case: Case,
    breaches: tuple[Breach, ...],
    *,
    message_id: str,
    dated: datetime,
    name: str | None = None,
) -> NoticeText:
    """The letter's subject and body; ``name`` replaces the person's name in a preview
    for staff whose unit shows less of it in mail (``staff_names``)."""
    unit = gw.settings.unit(case.unit.code)
    person = case.person
    full_name = person.full_name if person else ""
    reference = case.case_reference or case.number
    types = list(dict.fromkeys(b.type for b in breaches))
    plural = len(types) > 1
    subject = f"Brudd på vilkår om {join_nb(_CONDITION[t] for t in types)} – sak {reference}"
    body = render(
        "notice.txt.j2",
        unit=unit,
        addressee=_addressee(unit, case),
        case=case,
        reference=reference,
        name=name if name is not None else full_name,
        conditions=join_nb(_CONDITION_LONG[t] for t in types),
        plural=plural,
        breach_lines=[_breach_line(case, b) for b in breaches],
        summons_lines=_summons_lines(case),
        reaction=reaction_nb(case.reaction) if case.reaction else None,
        order_date=nb_day(_order_date(case)) if case.order_id else None,
        received=nb_day(case.created_at),
        contact=_contact(unit),
        message_id=message_id,
        dated=nb_day(dated),
    )
    return NoticeText(subject, body)


def breaches_for(notice: Notice) -> tuple[Breach, ...]:
    return tuple(Breach(type=b.type, on=b.on, description=BREACH_TEXT[b.type]) for b in notice.breach_facts())


def build_notice_message(
    gw: Gateway, case: Case, notice: Notice, recipients: tuple[str, ...], key: str
) -> OutboundMessage:
    unit = gw.settings.unit(case.unit.code)
    person = case.person
    assert person is not None and person.national_id is not None
    name = person.full_name
    breaches = breaches_for(notice)
    summonses = tuple(SummonsRecord(on=s.sent_on, channel=s.channel) for s in case.summonses)
    sent = gw.clock.now()
    document = NoticeDocument(
        message_id=notice.message_id,
        order_id=case.order_id,
        case_reference=case.case_reference or case.number,
        unit_name=unit.name,
        unit_org_number=unit.org_number,
        unit_contact_name=unit.contact_name,
        unit_contact_phone=unit.contact_phone,
        unit_contact_email=unit.contact_email,
        national_id=person.national_id,
        person_name=name,
        breaches=breaches,
        summonses=summonses,
        sent=sent,
    )
    xml = build_notice_xml(document)
    text = notice_text(gw, case, breaches, message_id=notice.message_id, dated=sent)
    return OutboundMessage(
        key=key,
        kind="notice",
        recipients=recipients,
        subject=text.subject,
        body=text.body,
        attachments=(Attachment(f"melding-{notice.message_id}.xml", "application/xml", xml),),
        headers={"X-Russak-MeldingId": notice.message_id},
    )
