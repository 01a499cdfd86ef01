"""Staff commands: by e-mail (``[RUS-2026-0042]`` in the subject, the command on the
first line) and from the CLI's ``record``, through one ``perform``.

Only addresses allow-listed for the case's unit are obeyed; anything else is logged
and ignored without a reply, so a forged or misdirected mail cannot trigger
backscatter. Every obeyed mail gets an answer: a confirmation, or the error and the
help text.

Every command mail leaves one info line, once its transaction is committed, naming
the case, what came of it and the outbox row of the reply (``command on
RUS-2026-0042: send-notice, reply outbox 57``), with ``case``, ``outcome`` and
``outbox_id`` as JSON fields: never the sender, the command's words or a place.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass
from datetime import date, time

from sqlalchemy.orm import Session

from gateway import cases
from gateway.clock import local_today
from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.domain import checks
from gateway.domain.closing import parse_close_reason
from gateway.domain.dates import DateParseError, parse_staff_date, parse_staff_time
from gateway.domain.identifiers import has_identity_shaped
from gateway.domain.lifecycle import AlreadyRecorded, TransitionError
from gateway.domain.words import fold
from gateway.messages.mail import MailContent
from gateway.messages.results import CASE_TAG, IntakeResult
from gateway.models import Case, InboundMessage, OutboxItem
from gateway.privacy import redact
from gateway.staff.mailer import reply
from gateway.staff.sheet import render_sheet
from gateway.texts import nb_date, render

log = logging.getLogger(__name__)

VERBS = (
    "summoned",
    "attended",
    "no-show",
    "test-taken",
    "test-missed",
    "send-notice",
    "close",
    "status",
    "help",
)

# Longest phrases first so "IKKE MØTT" wins over "MØTT". Keys are folded (gateway.domain.words.fold).
_PHRASES: list[tuple[str, str]] = sorted(
    [
        ("INNKALT", "summoned"),
        ("SUMMONED", "summoned"),
        ("MOTT", "attended"),
        ("ATTENDED", "attended"),
        ("IKKE MOTT", "no-show"),
        ("NO-SHOW", "no-show"),
        ("NO SHOW", "no-show"),
        ("PROVE TATT", "test-taken"),
        ("TEST TAKEN", "test-taken"),
        ("PROVE IKKE TATT", "test-missed"),
        ("TEST MISSED", "test-missed"),
        ("SEND VARSEL", "send-notice"),
        ("SEND NOTICE", "send-notice"),
        ("AVSLUTT", "close"),
        ("CLOSE", "close"),
        ("STATUS", "status"),
        ("HJELP", "help"),
        ("HELP", "help"),
    ],
    key=lambda p: -len(p[0]),
)
_TIME = re.compile(r"^(?:kl\.?\s*)?\d{1,2}[:.]\d{2}$", re.IGNORECASE)


class CommandError(ValueError):
    """A command staff wrote cannot be carried out (Norwegian message)."""


@dataclass(frozen=True)
class Command:
    verb: str
    on: date | None = None
    at: time | None = None
    place: str | None = None
    reason: str | None = None


def parse_command(line: str, today: date) -> Command:
    words = line.strip().split()
    normed = [fold(w) for w in words]
    for phrase, verb in _PHRASES:
        n = len(phrase.split())
        if " ".join(normed[:n]) == phrase:
            return _arguments(verb, words[n:], today)
    raise CommandError(f"Ukjent kommando «{redact(line.strip()[:40])}».")


def _arguments(verb: str, rest: list[str], today: date) -> Command:
    try:
        if verb == "summoned":
            if not rest:
                raise CommandError(
                    "INNKALT trenger dato for samtalen, for eksempel «INNKALT 3.12 10:00 Kontoret»."
                )
            try:
                on, rest = parse_staff_date(rest[0], today), rest[1:]
            except DateParseError:
                if len(rest) < 2:
                    raise
                on, rest = parse_staff_date(" ".join(rest[:2]), today), rest[2:]  # "i morgen"
            at = None
            if len(rest) > 1 and fold(rest[0]).rstrip(".") == "KL":
                at, rest = parse_staff_time("kl " + rest[1]), rest[2:]
            elif rest and _TIME.match(rest[0]):
                at, rest = parse_staff_time(rest[0]), rest[1:]
            return Command(verb, on=on, at=at, place=" ".join(rest) or None)
        if verb == "attended":  # without a date: the meeting just held, else today
            return Command(verb, on=parse_staff_date(" ".join(rest), today) if rest else None)
        if verb == "no-show":  # without a date: the booked meeting's day
            return Command(verb, on=parse_staff_date(" ".join(rest), today) if rest else None)
        if verb in ("test-taken", "test-missed"):
            if not rest:
                raise CommandError("Oppgi dato for prøven, for eksempel «PRØVE TATT 3.12».")
            return Command(verb, on=parse_staff_date(" ".join(rest), today))
        if verb == "close":
            if not rest:
                raise CommandError("AVSLUTT trenger en grunn, for eksempel «AVSLUTT flyttet».")
            return Command(verb, reason=" ".join(rest))
        return Command(verb)
    except DateParseError as exc:
        raise CommandError(str(exc)) from exc


def perform(gw: Gateway, session: Session, case: Case, command: Command, actor: str) -> str:
    """Carry out one command on a case; returns a Norwegian confirmation line."""
    today = local_today(gw.clock.now())
    on = command.on or today
    match command.verb:
        case "summoned":
            if command.place and has_identity_shaped(command.place):  # both doors: mail and CLI
                raise CommandError(
                    "Stedet ser ut til å inneholde et fødselsnummer. Skriv bare hvor samtalen er."
                )
            cases.summon(gw, session, case, on, command.at, command.place, actor)
            return (
                f"Innkallingen er registrert. Samtalen er {nb_date(on)}"
                + (f" kl. {command.at:%H:%M}" if command.at else "")
                + (f", sted: {command.place}." if command.place else ". Sted er ikke oppgitt.")
            )
        case "attended":
            on = command.on or checks.attendance_day(cases.facts_of(case), gw.clock.now())
            unbooked = cases.attended(gw, session, case, on, actor)
            return f"Oppmøtet {nb_date(on)} er registrert" + (
                " (ingen samtale var avtalt den dagen)." if unbooked else "."
            )
        case "no-show":
            day = cases.no_show(gw, session, case, command.on, actor)
            return f"Registrert at personen ikke møtte til samtalen {nb_date(day)}."
        case "test-taken":
            cases.test_taken(gw, session, case, on, actor)
            return f"Registrert at rusmiddelprøven {nb_date(on)} er tatt."
        case "test-missed":
            cases.test_missed(gw, session, case, on, actor)
            return f"Registrert at rusmiddelprøven {nb_date(on)} ikke er tatt."
        case "send-notice":
            cases.confirm_notice(gw, session, case, actor)
            return "Varselet er bekreftet. Det sendes til påtalemyndigheten om kort tid."
        case "close":
            reason = parse_close_reason(command.reason or "")
            cases.close(gw, session, case, reason, actor)
            return f"Saken er avsluttet ({reason.words})."
        case "status" | "help":
            return ""
    raise CommandError(f"Ukjent kommando «{command.verb}».")


def _case_for(gw: Gateway, session: Session, ref: str, sender: str) -> Case | None:
    """The case, if it exists and belongs to a unit that lists ``sender`` as staff."""
    try:
        case = cases.get_case(session, ref)
    except cases.CaseNotFound:
        return None
    if sender.lower() not in gw.settings.unit(case.unit.code).staff:
        log.warning("command for case %s from staff of another unit; answered as unknown", case.number)
        return None
    return case


_SHOWN_TAG = re.compile(r"RUS-\d{4}-\d{4,6}", re.IGNORECASE)


def _shown_tag(ref: str) -> str:
    """Echo a case tag only in its real shape: a long digit run could be an identity number."""
    return ref.upper() if _SHOWN_TAG.fullmatch(ref) else "med det nummeret"


def _first_line(body: str) -> str:
    for line in body.splitlines():
        stripped = line.strip()
        if stripped and not stripped.startswith(">"):
            return stripped
    return ""


def handle(gw: Gateway, session: Session, mail: MailContent, inbound: InboundMessage) -> IntakeResult:
    """A mail from an allow-listed staff address."""
    assert mail.sender is not None
    # Keyed by the mail's identity, not a row id, so a restored database cannot
    # collide with a reply sent before the backup was taken.
    key = f"reply:{inbound.dedupe_key or uuid.uuid4().hex}"
    subject = mail.subject or ""
    line = _first_line(mail.body_text)
    today = local_today(gw.clock.now())
    tag = CASE_TAG.search(subject)
    if tag is None:
        body = render(
            "help.txt.j2",
            error=None
            if fold(line).startswith(("HJELP", "HELP"))
            else "Fant ikke saksnummer i emnefeltet, for eksempel [RUS-2026-0042].",
        )
        sent = reply(gw, session, key, mail.sender, "russak-gateway: hjelp", body, None, mail.message_id)
        _log_command(session, None, "help", sent)
        return IntakeResult("command", reason="help sent")
    case = _case_for(gw, session, tag.group(1), mail.sender)
    if case is None:
        # The same answer whether the case does not exist or belongs to another unit,
        # so staff of one unit cannot learn which case numbers exist in another.
        shown = _shown_tag(tag.group(1))
        body = render("help.txt.j2", error=f"Fant ingen sak {shown} i din enhet.")
        sent = reply(
            gw, session, key, mail.sender, f"Feil: fant ingen sak {shown}", body, None, mail.message_id
        )
        _log_command(session, None, "unknown-case", sent)
        return IntakeResult("command", reason="unknown case")
    try:
        command = parse_command(line, today)
        confirmation = perform(gw, session, case, command, mail.sender)
    except AlreadyRecorded as exc:
        body = render_sheet(case, gw=gw, confirmation=f"Allerede registrert: {exc}")
        sent = reply(gw, session, key, mail.sender, "Allerede registrert", body, case, mail.message_id)
        _log_command(session, case, "already-registered", sent)
        return IntakeResult("command", case.number, "already registered")
    except (CommandError, TransitionError) as exc:
        body = render("help.txt.j2", error=str(exc))
        sent = reply(
            gw,
            session,
            key,
            mail.sender,
            "Feil: kommandoen ble ikke utført",
            body,
            case,
            mail.message_id,
        )
        _log_command(session, case, "rejected", sent, f" ({type(exc).__name__})")
        return IntakeResult("command", case.number, "rejected")
    if command.verb == "help":
        body = render("help.txt.j2", error=None)
    else:
        body = render_sheet(case, gw=gw, confirmation=confirmation)
    sent = reply(
        gw,
        session,
        key,
        mail.sender,
        "Bekreftet" if confirmation else "Status",
        body,
        case,
        mail.message_id,
    )
    _log_command(session, case, command.verb, sent)
    return IntakeResult("command", case.number, command.verb)


def _log_command(
    session: Session, case: Case | None, outcome: str, sent: OutboxItem | None, why: str = ""
) -> None:
    """``command on RUS-2026-0042: send-notice, reply outbox 57`` (see the module docstring)."""
    fields: dict[str, object] = {"outcome": outcome}
    if case is not None:
        fields["case"] = case.number
    if sent is not None:
        fields["outbox_id"] = sent.id
    where = f" on {case.number}" if case is not None else ""
    answer = f"reply outbox {sent.id}" if sent is not None else "reply already sent"
    line = "command%s: %s%s, %s"
    log_after_commit(session, log, logging.INFO, line, where, outcome, why, answer, extra=fields)
