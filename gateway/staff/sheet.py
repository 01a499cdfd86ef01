"""The case sheet: everything staff may see about a case, in one rendering.

``sheet_data`` collects it (plain JSON values, for ``russak case show --json``) and
``render_sheet`` writes it in bokmål for the STATUS reply, ``russak case show`` and
the alerts that embed it. It never carries the identity number: there is no key for
it. ``names`` says how much of the person it shows: ``full`` (the sheet on request)
or ``initials`` / ``none`` (what a unit's ``staff_names`` allows in alert mails),
which leave out the contact details too.

``next_commands`` is the one answer to "what can staff do now" in a case's state;
the sheet and every alert end with it.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import object_session

from gateway.cases.records import open_meeting
from gateway.cases.transitions import route
from gateway.context import Gateway
from gateway.delivery.outbox import decode_message
from gateway.domain.lifecycle import TransitionError
from gateway.models import Case, Meeting, Notice, OrderRecord, OutboxItem
from gateway.texts import (
    BREACH_NB,
    NOTICE_STATE_NB,
    OUTCOME_NB,
    SENT_VIA_NB,
    STATUS_NB,
    NameMode,
    actor_words,
    address_text,
    close_words,
    count_nb,
    explain_cancel,
    explain_reason,
    nb_date,
    nb_meeting,
    nb_time,
    reaction_nb,
    render,
    shown_name,
    summons_channel_nb,
    words,
)

ENDED = ("withdrawn", "closed")
CLOSE_COMMAND = (
    "AVSLUTT <grunn> – avslutt saken; grunnen er flyttet, tilbakekalt, prøvetiden er ute eller annet"
)


# What staff can do next -------------------------------------------------------------


def next_commands(case: Case, *, status_command: bool = True) -> list[str]:
    """The commands that make sense in this case's state, each with what it means."""
    state = case.status
    if state in ENDED:
        return []
    found: list[str] = []
    if state == "needs_registration":
        found.append("AVSLUTT annet – hvis brevet ikke skal bli en sak")
        return found + (["STATUS – se hva gatewayen fant i brevet"] if status_command else [])
    attendance_due = case.attendances < case.required_attendances
    meeting = open_meeting(case)
    draft = _current(case, "draft")
    if state == "summoned" and meeting is not None:
        when = nb_meeting(meeting.starts_on, meeting.starts_at)
        found += [
            f"MØTT – når personen har møtt til samtalen {when}",
            "IKKE MØTT – hvis personen ikke kom til samtalen",
            "INNKALT <dato> <kl> <sted> – ny tid; den avtalte samtalen blir avlyst",
        ]
    elif state == "awaiting_summons":
        found.append(
            "INNKALT <dato> <kl> <sted> – når du har sendt skriftlig innkalling"
            + (" til neste samtale" if case.attendances else "")
        )
        found.append(
            "MØTT <dato> – hvis personen har møtt uten skriftlig innkalling (for eksempel avtalt på telefon)"
        )
    elif state == "noncompliant":
        if draft is not None:
            found.append("SEND VARSEL – send varselet til påtalemyndigheten")
        found.append("INNKALT <dato> <kl> <sted> – ny innkalling i stedet for varsel")
        if attendance_due:
            found.append("MØTT <dato> – hvis personen likevel møtte")
    tests_left = case.tests_required - case.tests_taken
    if tests_left > 0 and state in ("awaiting_summons", "summoned", "noncompliant", "fulfilled"):
        found += [
            "PRØVE TATT <dato> – når en rusmiddelprøve er tatt",
            "PRØVE IKKE TATT <dato> – når en pålagt prøve ikke ble tatt",
        ]
    if state in ("fulfilled", "notified"):
        found.append(f"AVSLUTT prøvetiden er ute – når prøvetiden er over ({nb_date(case.condition_end)})")
    else:
        found.append(CLOSE_COMMAND)
    if status_command:
        found.append("STATUS – få hele saksarket")
    return found


def person_label(case: Case, mode: NameMode) -> str | None:
    """The person's name as far as ``mode`` allows, for alert and digest bodies."""
    return shown_name(case.person.full_name if case.person else None, mode)


# Collecting the sheet ------------------------------------------------------------


def _current(case: Case, status: str) -> Notice | None:
    for notice in reversed(case.notices):
        if notice.status == status:
            return notice
    return None


def _address(raw: str | None) -> dict[str, Any] | None:
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return {"lines": [raw], "postal_code": None, "city": None}
    return {
        "lines": [str(x) for x in data.get("lines") or []],
        "postal_code": data.get("postal_code"),
        "city": data.get("city"),
    }


def _birth(raw: str | None) -> date | None:
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        return None


def _channel_type(gw: Gateway | None, name: str | None) -> str | None:
    if gw is None or name is None:
        return None
    try:
        return gw.settings.channel(name).type
    except KeyError:
        return None


def _delivery(case: Case, notice: Notice, gw: Gateway | None) -> dict[str, Any] | None:
    """Where the notice went: its newest outbox row (channel, recipients, receipt)."""
    session = object_session(case)
    if session is None or notice.id is None:
        return None
    item = session.scalars(
        select(OutboxItem).where(OutboxItem.notice_id == notice.id).order_by(OutboxItem.id.desc())
    ).first()
    if item is None:
        return None
    recipients: list[str] = []
    if item.payload:
        try:
            recipients = list(decode_message(item.payload).recipients)
        except (ValueError, KeyError):
            recipients = []
    kind = _channel_type(gw, item.channel)
    return {
        "channel": item.channel,
        "channel_type": kind,
        "recipients": recipients,
        "state": item.status,
        "receipt": item.receipt,
        "handed_over_at": item.sent_at,
        "via": SENT_VIA_NB.get(kind or "", "sendt"),
    }


def _planned_route(case: Case, gw: Gateway | None) -> dict[str, Any]:
    """Where a notice not yet sent will go."""
    to = case.sender_name or "påtalemyndigheten"
    if gw is None:
        return {"to": to, "recipients": [case.reply_address] if case.reply_address else [], "problem": None}
    try:
        channel, recipients = route(gw, case)
    except TransitionError as exc:
        return {"to": to, "recipients": [], "problem": str(exc)}
    unit = gw.settings.unit(case.unit.code)
    district = unit.district_for(case.sender_org_number)
    return {
        "to": district.name if district else to,
        "recipients": list(recipients),
        "channel": channel,
        "channel_type": _channel_type(gw, channel),
        "problem": None,
    }


def _notice(case: Case, notice: Notice, gw: Gateway | None) -> dict[str, Any]:
    breaches = [
        {
            "type": b.type,
            "date": b.on,
            "text": f"{words(BREACH_NB, b.type, 'brudd på vilkår')} {nb_date(b.on)}",
        }
        for b in notice.breach_facts()
    ]
    data: dict[str, Any] = {
        "message_id": notice.message_id,
        "status": notice.status,
        "status_text": words(NOTICE_STATE_NB, notice.status, "ukjent"),
        "breaches": breaches,
        "created_at": notice.created_at,
        "auto_send_on": notice.auto_send_on,
        "confirmed_by": actor_words(notice.confirmed_by),
        "confirmed_at": notice.confirmed_at,
        "sent_at": notice.sent_at,
        "delivery": _delivery(case, notice, gw),
        "route": _planned_route(case, gw) if notice.status in ("draft", "queued") else None,
        "problem": None,
        "cancelled_because": None,
    }
    if notice.status == "cancelled":
        data["cancelled_because"] = explain_cancel(notice.cancel_reason)
    elif notice.status in ("draft", "dead") and notice.cancel_reason:
        # back to draft (or dead) after a failed delivery: the reason is technical
        data["problem"] = explain_reason(notice.cancel_reason)
    return data


def _meeting(m: Meeting) -> dict[str, Any]:
    return {
        "date": m.starts_on,
        "time": nb_time(m.starts_at) if m.starts_at else None,
        "starts_at": m.starts_at,
        "place": m.place,
        "outcome": m.outcome,
        "outcome_text": words(OUTCOME_NB, m.outcome, "ukjent"),
        "outcome_on": m.outcome_on,
        "text": nb_meeting(m.starts_on, m.starts_at, m.place),
    }


def _order_sent(case: Case) -> datetime | None:
    session = object_session(case)
    if session is None or case.order_id is None:
        return None
    return session.scalar(select(OrderRecord.sent_at).where(OrderRecord.order_id == case.order_id))


def _suggestions(case: Case) -> dict[str, Any] | None:
    if not case.suggestions:
        return None
    raw = json.loads(case.suggestions)
    return {
        "identity_numbers_found": len(raw.get("national_ids") or []),
        "case_references": list(raw.get("case_references") or []),
        "dates": list(raw.get("dates") or []),
        "attachments": list(raw.get("attachments") or []),
    }


def _collect(case: Case, gw: Gateway | None) -> dict[str, Any]:
    person = case.person
    meetings = {m.id: m for m in case.meetings}
    summonses = []
    for s in case.summonses:
        booked = meetings.get(s.meeting_id) if s.meeting_id else None
        summonses.append(
            {
                "sent_on": s.sent_on,
                "channel": s.channel,
                "channel_text": summons_channel_nb(s.channel),
                "meeting": _meeting(booked) if booked else None,
            }
        )
    return {
        "number": case.number,
        "unit": case.unit.code,
        "status": case.status,
        "status_text": words(STATUS_NB, case.status, "ukjent"),
        "minor": case.minor,
        "person": None
        if person is None
        else {
            "name": person.full_name or None,
            "first_name": person.first_name,
            "last_name": person.last_name,
            "birth_date": _birth(person.birth_date),
            "address": _address(person.address),
            "address_text": address_text(_address(person.address)),
            "phone": person.phone,
            "email": person.email,
        },
        "guardians": []
        if person is None
        else [
            {
                "name": g.full_name or None,
                "phone": g.phone,
                "email": g.email,
                "address": _address(g.address),
                "address_text": address_text(_address(g.address)),
            }
            for g in person.guardians
        ],
        "order": {
            "order_id": case.order_id,
            "from": case.sender_name,
            "from_org_number": case.sender_org_number,
            "case_reference": case.case_reference,
            "reaction": case.reaction,
            "reaction_text": reaction_nb(case.reaction),
            "decided_on": case.decided_on,
            "order_sent_at": _order_sent(case),
            "received_at": case.created_at,
            "condition_end": case.condition_end,
            "attendance_deadline": case.attendance_deadline,
            "first_meeting_target": case.first_meeting_target,
            "required_attendances": case.required_attendances,
            "attendances": case.attendances,
            "tests_required": case.tests_required,
            "tests_taken": case.tests_taken,
            "tests_from": case.tests_from,
            "tests_to": case.tests_to,
            "remark": case.remark,
        },
        "summonses": summonses,
        "meetings": [_meeting(m) for m in case.meetings],
        "tests": [
            {"date": t.on, "taken": t.taken, "text": "tatt" if t.taken else "ikke tatt"} for t in case.tests
        ],
        "notices": [_notice(case, n, gw) for n in case.notices],
        "ended": None
        if case.status not in ENDED
        else {
            "at": case.ended_at,
            "reason": case.close_reason,
            "reason_text": close_words(case.close_reason),
            "comment": case.close_comment,
            "status_text": STATUS_NB[case.status],
        },
        "suggestions": _suggestions(case) if case.status == "needs_registration" else None,
        "next": next_commands(case, status_command=False),
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    return value


def sheet_data(case: Case, *, gw: Gateway | None = None) -> dict[str, Any]:
    """The case sheet as plain JSON values (ISO dates, codes beside their words).

    With ``gw`` it also says through which kind of channel a notice went or will go.
    """
    data: dict[str, Any] = _jsonable(_collect(case, gw))
    return data


def render_sheet(
    case: Case,
    *,
    names: NameMode = "full",
    gw: Gateway | None = None,
    confirmation: str | None = None,
    header: bool = True,
    signature: bool = True,
) -> str:
    """The case sheet in bokmål; ``confirmation`` (a command's answer) comes first."""
    data = _collect(case, gw)
    person = data["person"]
    shown = shown_name(person["name"] if person else None, names)
    return render(
        "case_sheet.txt.j2",
        s=data,
        names=names,
        shown_name=shown,
        confirmation=confirmation,
        header=header,
        signature=signature,
        count_nb=count_nb,
    )
