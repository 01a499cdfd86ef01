"""Staff alerts: one function per thing that happened, each with its dedupe key.

Subjects carry the case number in brackets (``[RUS-2026-0042]``) so a reply lands as
a command on the right case, and never a name or identity number. The case
effects (``gateway.effects``) reach these functions through the handlers
``gateway.app`` registers.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from sqlalchemy.orm import Session

from gateway.clock import local_today
from gateway.context import Gateway
from gateway.models import Case, Notice, OutboxItem
from gateway.staff.mailer import alert
from gateway.texts import nb_date

BREACH_NB = {"ikke_mott": "Møtte ikke", "prove_ikke_tatt": "Prøve ikke tatt"}


def alert_new_case(gw: Gateway, session: Session, case: Case) -> None:
    lines = [f"Reaksjon: {case.reaction or '–'}", f"Prøvetid til: {nb_date(case.condition_end)}"]
    if case.attendance_deadline:
        lines.append(f"Frist for oppmøte: {nb_date(case.attendance_deadline)}")
    lines.append(f"Første samtale bør holdes innen: {nb_date(case.first_meeting_target)}")
    if case.minor:
        lines.append("Personen er under 18 år: foresatte skal involveres.")
    if case.tests_required:
        lines.append(f"Vilkår om rusmiddeltesting: {case.tests_required} prøve(r).")
    overdue = case.attendance_deadline is not None and case.attendance_deadline < local_today(gw.clock.now())
    if overdue:
        lines.insert(0, "Fristen for oppmøte var allerede passert da ordren kom. Kontakt påtalemyndigheten.")
    alert(
        gw,
        session,
        f"case:{case.uid}:new",
        "Ny sak: fristen for oppmøte er allerede passert" if overdue else "Ny sak: send skriftlig innkalling",
        "Påtalemyndigheten har pålagt oppmøte. Send skriftlig innkalling.",
        case=case,
        lines=lines,
        actions=["INNKALT <dato> [<kl>] [<sted>]"],
    )


def alert_needs_registration(gw: Gateway, session: Session, case: Case) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:letter",
        "Brev fra politiet må registreres",
        "Et brev fra politiet uten strukturert ordre er mottatt og må registreres.",
        case=case,
        lines=[
            "Kandidatverdier (fødselsnummer, saksnummer, datoer) er foreslått i saken.",
            "Registrer saken med «russak register» (se brukerveiledningen).",
        ],
    )


def alert_same_person(gw: Gateway, session: Session, case: Case, others: list[str]) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:same-person",
        "Samme person har en annen åpen sak",
        "Ordren gjelder en person som allerede har en åpen sak.",
        case=case,
        lines=[f"Andre åpne saker: {', '.join(others)}"],
    )


def alert_withdrawn(gw: Gateway, session: Session, case: Case) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:withdrawn",
        "Ordren er tilbakekalt",
        "Påtalemyndigheten har tilbakekalt ordren. Saken er lukket, og det sendes ikke varsel.",
        case=case,
        lines=["Avlys eventuelle avtalte samtaler."],
    )


def alert_amended(gw: Gateway, session: Session, case: Case) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:amended:{uuid.uuid4().hex}",
        "Vilkårene er endret",
        "Påtalemyndigheten har endret vilkår eller frister i saken.",
        case=case,
        lines=[
            f"Antall samtaler: {case.required_attendances}",
            f"Prøvetid til: {nb_date(case.condition_end)}",
            f"Frist for oppmøte: {nb_date(case.attendance_deadline)}",
        ],
    )


def alert_notice_drafted(gw: Gateway, session: Session, case: Case, notice: Notice) -> None:
    lines = [f"{BREACH_NB[b['type']]} {nb_date(date.fromisoformat(b['on']))}" for b in notice.breaches]
    if notice.auto_send_on:
        lines.append(
            f"Varselet sendes automatisk {nb_date(notice.auto_send_on)} hvis ingenting annet registreres."
        )
    alert(
        gw,
        session,
        f"notice:{notice.message_id}:drafted:{uuid.uuid4().hex}",
        "Utkast til varsel om manglende oppfyllelse",
        "Det er laget et utkast til varsel til påtalemyndigheten.",
        case=case,
        lines=lines,
        actions=[
            "SEND VARSEL (bekreft og send)",
            "INNKALT <dato> (ny innkalling i stedet)",
            "MØTT <dato> (hvis personen likevel møtte)",
        ],
    )


def alert_notice_sent(gw: Gateway, session: Session, case: Case, notice: Notice) -> None:
    alert(
        gw,
        session,
        f"notice:{notice.message_id}:sent",
        "Varsel er sendt til påtalemyndigheten",
        "Varselet om manglende oppfyllelse er levert.",
        case=case,
        lines=[f"Meldings-ID: {notice.message_id}"],
    )


def alert_notice_failed(gw: Gateway, session: Session, case: Case, reason: str) -> None:
    alert(
        gw,
        session,
        f"case:{case.uid}:notice-failed:{uuid.uuid4().hex}",
        "Varsel kunne ikke leveres",
        "Varselet til påtalemyndigheten kunne ikke leveres. Det ligger igjen som utkast.",
        case=case,
        lines=[
            f"Feil: {reason}",
            "Kontakt driftsansvarlig, og svar SEND VARSEL når feilen er rettet.",
        ],
    )


def dead_letter_key(key: str) -> str:
    """The alert about a dead letter, keyed by the dead message's own key (stable
    across a restore, unlike its row id)."""
    return f"dead:{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def alert_dead_letter(
    gw: Gateway, session: Session, item: OutboxItem, case: Case | None, reason: str
) -> None:
    alert(
        gw,
        session,
        dead_letter_key(item.key),
        f"Utsending feilet (utboks {item.id})",
        "En melding fra russak-gateway kunne ikke leveres og er lagt til side.",
        case=case,
        lines=[
            f"Type: {item.kind}",
            f"Feil: {reason}",
            "Driftsansvarlig kan se den med «russak outbox».",
        ],
    )


def alert_quarantine(gw: Gateway, session: Session, quarantine_id: int, channel: str, reason: str) -> None:
    alert(
        gw,
        session,
        f"quarantine:{uuid.uuid4().hex}",
        f"Melding satt i karantene (nr. {quarantine_id})",
        "En innkommende melding kunne ikke behandles og er satt i karantene. Ingenting er slettet.",
        lines=[
            f"Kanal: {channel}",
            f"Årsak: {reason}",
            "Driftsansvarlig kan se og eksportere den med «russak quarantine».",
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
