"""Staff alerts: one function per thing that happened, each with its dedupe key.

Subjects carry the case number in brackets (``[RUS-2026-0042]``) so a reply lands as
a command on the right case, and never a name or identity number. Bodies carry the
person's name only as far as the unit's ``staff_names`` allows (initials by
default); the full case sheet comes only on request (STATUS). Every alert about an
open case ends with the commands that make sense in its state
(``gateway.staff.sheet.next_commands``), and technical reasons are explained in
Norwegian (``gateway.texts.explain_reason``): the English detail stays in the log.
The case effects (``gateway.effects``) reach these functions through the handlers
``gateway.app`` registers.
"""

from __future__ import annotations

import hashlib
import json
import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.transitions import route
from gateway.clock import local_today
from gateway.context import Gateway
from gateway.delivery.notices import breaches_for, notice_text
from gateway.delivery.outbox import decode_message
from gateway.domain.lifecycle import TransitionError
from gateway.models import Case, Notice, OutboxItem
from gateway.ports import Attachment
from gateway.staff.mailer import alert
from gateway.staff.sheet import next_commands, person_label
from gateway.texts import (
    BREACH_NB,
    OUTBOX_KIND_NB,
    REASON_DETAIL,
    RECEIVED_VIA_NB,
    SENT_VIA_NB,
    NameMode,
    count_nb,
    explain_reason,
    join_nb,
    nb_date,
    reaction_nb,
    words,
)


def _names(gw: Gateway, case: Case) -> NameMode:
    return gw.settings.unit(case.unit.code).staff_names


def _who(gw: Gateway, case: Case) -> list[str]:
    """The "Navn:" line, as far as the unit's ``staff_names`` allows."""
    shown = person_label(case, _names(gw, case))
    return [f"Navn: {shown}"] if shown else []


def _terms(case: Case) -> list[str]:
    """The order's terms in words."""
    lines = [
        f"Reaksjon: {reaction_nb(case.reaction)}"
        + (f", avgjort {nb_date(case.decided_on)}" if case.decided_on else ""),
        f"Vilkår: møte til {count_nb(case.required_attendances, 'samtale', 'samtaler')}"
        + (f" innen {nb_date(case.attendance_deadline)}" if case.attendance_deadline else "")
        + ".",
    ]
    if case.tests_required:
        window = (
            f" mellom {nb_date(case.tests_from)} og {nb_date(case.tests_to)}"
            if case.tests_from and case.tests_to
            else ""
        )
        lines.append(f"Rusmiddeltesting: {count_nb(case.tests_required, 'prøve', 'prøver')}{window}.")
    lines.append(f"Prøvetid til: {nb_date(case.condition_end)}")
    return lines


def alert_new_case(gw: Gateway, session: Session, case: Case) -> None:
    overdue = case.attendance_deadline is not None and case.attendance_deadline < local_today(gw.clock.now())
    lines = _who(gw, case) + _terms(case)
    lines.append(f"Første samtale bør holdes innen: {nb_date(case.first_meeting_target)}")
    if case.minor:
        guardians = len(case.person.guardians) if case.person else 0
        lines.append(
            "Foresatte skal involveres."
            + (f" {count_nb(guardians, 'foresatt', 'foresatte')} står i ordren." if guardians else "")
        )
    if overdue:
        lines.insert(0, "Fristen for oppmøte var allerede passert da ordren kom. Kontakt påtalemyndigheten.")
        lines.insert(1, "")
    lines += [
        "",
        "Svar STATUS for å få hele saksarket med navn, adresse og telefon før du skriver innkallingen.",
        "Når innkallingen er sendt, svarer du INNKALT med dato, klokkeslett og sted for samtalen.",
    ]
    alert(
        gw,
        session,
        f"case:{case.uid}:new",
        "Ny sak: fristen for oppmøte er allerede passert" if overdue else "Ny sak: send skriftlig innkalling",
        f"Ny sak fra {case.sender_name or 'påtalemyndigheten'}: en person er pålagt å møte til samtale. "
        "Send skriftlig innkalling.",
        case=case,
        lines=lines,
        actions=[c for c in next_commands(case) if c.startswith(("INNKALT", "STATUS"))],
    )


def alert_needs_registration(
    gw: Gateway, session: Session, case: Case, *, original: bytes | None = None
) -> None:
    """A police letter with no structured order: what intake found in it, and what
    staff send the operator, who registers it (until registration by mail exists).

    ``original`` is the letter as it came (an RFC 5322 mail); it goes with the alert
    as ``brev-fra-politiet.eml`` so staff can read it in Outlook.
    """
    letter_attached = original is not None
    raw = json.loads(case.suggestions) if case.suggestions else {}
    found = [
        f"Mulige saksnumre: {', '.join(raw.get('case_references') or []) or 'ingen funnet'}",
        f"Datoer: {', '.join(raw.get('dates') or []) or 'ingen funnet'}",
    ]
    if raw.get("attachments"):
        found.append(f"Vedlegg i brevet: {', '.join(raw['attachments'])}")
    if raw.get("national_ids"):
        found.append("Brevet ser ut til å inneholde et fødselsnummer. Det vises ikke i e-post.")
    letter = (
        "Brevet fra politiet ligger vedlagt."
        if letter_attached
        else "Brevet er lagret i gatewayen, men kan ennå ikke legges ved e-posten. "
        "Spør driftsansvarlig hvis du trenger å se det."
    )
    alert(
        gw,
        session,
        f"case:{case.uid}:letter",
        "Brev fra politiet må registreres",
        "Politiet har sendt et brev uten strukturert ordre. Det må registreres som sak før du kan "
        "følge det opp.",
        case=case,
        lines=[
            letter,
            "",
            "Dette fant gatewayen i brevet (kontroller alt mot brevet):",
            *(f"  {line}" for line in found),
            "",
            "Send disse opplysningene fra brevet til driftsansvarlig:",
            "  fornavn og etternavn",
            "  politiets saksnummer og hvilket politidistrikt brevet kom fra",
            "  reaksjonen (for eksempel betinget påtaleunnlatelse)",
            "  når prøvetiden går ut, og eventuell frist for oppmøte",
            "  antall samtaler og antall rusmiddelprøver som er pålagt",
            "Fødselsnummeret gir du muntlig eller i en sikker kanal, aldri i vanlig e-post.",
            "",
            "Driftsansvarlig registrerer saken, til det blir mulig å registrere den på e-post.",
        ],
        actions=next_commands(case),
        attachments=(Attachment("brev-fra-politiet.eml", "message/rfc822", original),) if original else (),
    )


def alert_same_person(gw: Gateway, session: Session, case: Case, others: list[str]) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:same-person",
        "Samme person har en annen åpen sak",
        "Ordren gjelder en person som allerede har en åpen sak. Se sakene sammen før du innkaller.",
        case=case,
        lines=[*_who(gw, case), f"Andre åpne saker: {', '.join(others)}"],
        actions=next_commands(case),
    )


def alert_withdrawn(gw: Gateway, session: Session, case: Case) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:withdrawn",
        "Ordren er tilbakekalt",
        "Påtalemyndigheten har tilbakekalt ordren. Saken er lukket, og det sendes ikke varsel.",
        case=case,
        lines=[*_who(gw, case), "Avlys samtaler som er avtalt, og gi personen beskjed."],
    )


def alert_amended(gw: Gateway, session: Session, case: Case) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:amended:{uuid.uuid4().hex}",
        "Vilkårene er endret",
        "Påtalemyndigheten har endret vilkår eller frister i saken. Slik er de nå:",
        case=case,
        lines=[*_who(gw, case), *_terms(case)],
        actions=next_commands(case),
    )


def _route_lines(gw: Gateway, case: Case) -> list[str]:
    try:
        _, recipients = route(gw, case)
    except TransitionError as exc:
        return [f"Mottaker: {exc}"]
    unit = gw.settings.unit(case.unit.code)
    district = unit.district_for(case.sender_org_number)
    to = district.name if district else (case.sender_name or "påtalemyndigheten")
    return [f"Varselet går til {to} ({', '.join(recipients)})."]


def alert_notice_drafted(gw: Gateway, session: Session, case: Case, notice: Notice) -> None:
    breaches = breaches_for(notice)
    what = join_nb(f"{words(BREACH_NB, b.type)} {nb_date(b.on)}" for b in breaches)
    lines = [*_who(gw, case), f"Gjelder: {what}.", *_route_lines(gw, case)]
    if notice.auto_send_on:
        lines.append(
            f"Varselet sendes automatisk {nb_date(notice.auto_send_on)} hvis ingenting annet blir registrert."
        )
    else:
        lines.append("Varselet sendes først når du svarer SEND VARSEL.")
    names = _names(gw, case)
    shown = person_label(case, names)
    preview = notice_text(
        gw,
        case,
        breaches,
        message_id=notice.message_id,
        dated=gw.clock.now(),
        name=None if names == "full" else (shown or "[navnet]"),
    )
    lines += [
        "",
        "Slik blir varselet:",
        "",
        f"Emne: {preview.subject}",
        "",
        *preview.body.rstrip().splitlines(),
    ]
    if names != "full":
        lines += ["", "I varselet står personens fulle navn. Fødselsnummeret står bare i vedlegget (XML)."]
    alert(
        gw,
        session,
        f"notice:{notice.message_id}:drafted:{uuid.uuid4().hex}",
        "Utkast til varsel om manglende oppfyllelse",
        "Det er laget et utkast til varsel til påtalemyndigheten. Les det, og bekreft det med SEND VARSEL.",
        case=case,
        lines=lines,
        actions=next_commands(case),
    )


def _handed_over(gw: Gateway, session: Session, notice: Notice) -> tuple[str, list[str]]:
    """How the channel took the notice, true to what it confirmed, and to whom."""
    item = session.scalars(
        select(OutboxItem).where(OutboxItem.notice_id == notice.id).order_by(OutboxItem.id.desc())
    ).first()
    if item is None:
        return "sendt", []
    try:
        kind = gw.settings.channel(item.channel).type
    except KeyError:
        kind = ""
    recipients = list(decode_message(item.payload).recipients) if item.payload else []
    return SENT_VIA_NB.get(kind, "sendt"), recipients


def alert_notice_sent(gw: Gateway, session: Session, case: Case, notice: Notice) -> None:
    via, recipients = _handed_over(gw, session, notice)
    when = nb_date(notice.sent_at) if notice.sent_at else ""
    lines = [
        f"Varselet ble {via} {when}".rstrip()
        + (f", til {', '.join(recipients)}" if recipients else "")
        + ".",
        "Gatewayen får ikke beskjed når påtalemyndigheten har lest det.",
        f"Meldings-ID: {notice.message_id}",
    ]
    if case.status != "notified":
        lines += [
            "",
            "Saken ble endret mens varselet var på vei, og varselet kunne ikke stoppes. "
            "Ta kontakt med påtalemyndigheten hvis varselet ikke lenger stemmer.",
        ]
    alert(
        gw,
        session,
        f"notice:{notice.message_id}:sent",
        "Varsel er sendt til påtalemyndigheten",
        f"Varselet om manglende oppfyllelse er {via}.",
        case=case,
        lines=lines,
    )


def alert_notice_failed(gw: Gateway, session: Session, case: Case, reason: str) -> None:
    back_to_draft = case.notice_state == "draft" and case.status not in ("withdrawn", "closed")
    lines = [explain_reason(reason), REASON_DETAIL]
    if back_to_draft:
        lines.append("Varselet ligger igjen som utkast. Ingenting er sendt.")
        lines.append("Kontakt driftsansvarlig, og svar SEND VARSEL når feilen er rettet.")
    elif case.status in ("withdrawn", "closed"):
        lines.append("Saken er lukket, så varselet sendes ikke på nytt.")
    else:
        lines.append(
            "Ingenting er sendt. Saken er endret siden, så det er ikke noe varsel å sende på nytt nå."
        )
    alert(
        gw,
        session,
        f"case:{case.uid}:notice-failed:{uuid.uuid4().hex}",
        "Varsel kunne ikke sendes",
        "Varselet til påtalemyndigheten kunne ikke sendes.",
        case=case,
        lines=lines,
        actions=next_commands(case) if back_to_draft else [],
    )


def dead_letter_key(key: str) -> str:
    """The alert about a dead letter, keyed by the dead message's own key (stable
    across a restore, unlike its row id)."""
    return f"dead:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def alert_dead_letter(
    gw: Gateway, session: Session, item: OutboxItem, case: Case | None, reason: str
) -> None:
    what = words(OUTBOX_KIND_NB, item.kind, "melding fra gatewayen")
    if item.payload:
        # subjects carry no names or identity numbers, so the failed one may be shown
        what += f" («{decode_message(item.payload).subject}»)"
    alert(
        gw,
        session,
        dead_letter_key(item.key),
        f"Utsending feilet (utboks {item.id})",
        "En e-post fra russak-gateway kunne ikke sendes. Den er lagt til side, og ingenting er slettet.",
        case=case,
        lines=[
            f"Hva: {what}",
            f"Årsak: {explain_reason(reason)}",
            f"{REASON_DETAIL} Meldingen har nummer {item.id} i «russak outbox».",
        ],
        actions=["STATUS – få hele saksarket"] if case is not None else [],
    )


def alert_quarantine(gw: Gateway, session: Session, quarantine_id: int, channel: str, reason: str) -> None:
    try:
        kind = gw.settings.channel(channel).type
    except KeyError:
        kind = ""
    alert(
        gw,
        session,
        f"quarantine:{uuid.uuid4().hex}",
        f"Melding satt i karantene (nr. {quarantine_id})",
        "En innkommende melding kunne ikke behandles og er satt til side i karantene. Ingenting er slettet.",
        lines=[
            f"Årsak: {explain_reason(reason)}",
            f"Kom inn via: {words(RECEIVED_VIA_NB, kind, 'en kanal for innkommende meldinger')}",
            "",
            "Gjelder det en ordre fra politiet, kan du be dem sende den på nytt.",
            f"{REASON_DETAIL} Meldingen har nummer {quarantine_id} i «russak quarantine».",
        ],
    )


class StaffMailDelivery:
    """The outbox's handler for staff mail kinds (alert, digest, reply).

    A dead staff mail raises an alert about it, except an alert about a failure
    (``dead:`` keys), so a broken mail channel cannot make alerts about alerts.
    """

    def may_send(self, gw: Gateway, session: Session, item: OutboxItem) -> bool:
        return True

    def delivered(self, gw: Gateway, session: Session, item: OutboxItem, receipt: object) -> None:
        return None

    def failed(self, gw: Gateway, session: Session, item: OutboxItem, reason: str) -> None:
        if item.kind == "alert" and item.key.startswith("dead:"):
            return
        case = session.get(Case, item.case_id) if item.case_id else None
        alert_dead_letter(gw, session, item, case, reason)
