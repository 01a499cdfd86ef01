"""What is due now, computed from the database on every tick.

Nothing here is a stored job: each rule is a query over deadlines, and each reminder
is enqueued with a dedupe key (``case:42:summons-overdue:2026-12-03``) that the
outbox accepts once. Restarts, clock jumps, a daemon that was down for a week, and
two instances ticking at once therefore neither lose nor double a reminder. Keys
include the deadline they are about, so an ``endring`` that moves a deadline arms a
fresh reminder for the new date. Each reminder enqueued leaves one line naming its
rule, case and outbox row (``reminder summons-overdue for RUS-2026-0042: outbox 57``),
never the headline, which may name a meeting place.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import cases
from gateway.clock import OSLO, local_today
from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.models import Case, Meeting, Notice, OrderRecord, OutboxItem, Summons
from gateway.staff import digest
from gateway.staff.mailer import alert
from gateway.texts import nb_date, nb_time

log = logging.getLogger(__name__)

OPEN_FOR_DEADLINES = ("needs_registration", "awaiting_summons", "summoned", "noncompliant")
NOT_ENDED = (
    "needs_registration",
    "awaiting_summons",
    "summoned",
    "fulfilled",
    "noncompliant",
    "notified",
)
MORNING = time(7, 0)
REMINDER_BATCH = 200


@dataclass(frozen=True)
class Due:
    key: str
    case_id: int | None
    subject: str
    headline: str
    lines: tuple[str, ...] = ()
    actions: tuple[str, ...] = ()
    what: str = "reminder"  # for the log line: which rule, in English, without personal data


@dataclass
class TickReport:
    reminders: int = 0
    auto_notices: list[str] = field(default_factory=list)
    digests: int = 0


def due_reminders(gw: Gateway, session: Session, now: datetime) -> list[Due]:
    """Every reminder whose moment has come, before dedupe.

    Keys are built from what survives a backup and restore (the case's UUID, the
    notice's MeldingId, the order's OrdreId, dates), never from row ids.
    """
    today = local_today(now)
    morning = now.astimezone(OSLO).time() >= MORNING
    horizon = today + timedelta(days=gw.settings.gateway.deadline_warning_days)
    next_working = gw.calendar.add_working_days(today, 1)
    found: list[Due] = []

    summoned_ids = select(Summons.case_id)
    for case_id, uid, target in session.execute(
        select(Case.id, Case.uid, Case.first_meeting_target).where(
            Case.status.in_(("awaiting_summons", "needs_registration")),
            Case.first_meeting_target < today,
            Case.id.not_in(summoned_ids),
        )
    ):
        found.append(
            Due(
                f"case:{uid}:summons-overdue:{target}",
                case_id,
                "Innkalling er ikke sendt",
                f"Første samtale skulle vært holdt innen {nb_date(target)}, "
                "og ingen innkalling er registrert. Send skriftlig innkalling nå.",
                actions=(
                    "INNKALT <dato> <kl> <sted> – når du har sendt skriftlig innkalling",
                    "STATUS – få hele saksarket",
                ),
                what="summons-overdue",
            )
        )

    for case_id, uid, created in session.execute(
        select(Case.id, Case.uid, Case.created_at).where(Case.status == "needs_registration")
    ):
        if gw.calendar.working_days_between(local_today(created), today) >= 1:
            found.append(
                Due(
                    f"case:{uid}:registration-pending",
                    case_id,
                    "Brev venter på registrering",
                    "Et brev fra politiet er ennå ikke registrert som sak. "
                    "Send opplysningene fra brevet til driftsansvarlig, som registrerer det.",
                    actions=("STATUS – se hva gatewayen fant i brevet",),
                    what="registration-pending",
                )
            )

    for case_id, uid, starts_on, starts_at, place in session.execute(
        select(Meeting.case_id, Case.uid, Meeting.starts_on, Meeting.starts_at, Meeting.place)
        .join(Case, Case.id == Meeting.case_id)
        .where(Meeting.outcome.is_(None), Meeting.starts_on <= next_working)
    ):
        meeting = f"case:{uid}:meeting:{starts_on}" + (f"T{starts_at:%H%M}" if starts_at else "")
        when = nb_date(starts_on) + (f" kl. {nb_time(starts_at)}" if starts_at else "")
        where = f", {place}" if place else ""
        if starts_on < today:
            found.append(
                Due(
                    f"{meeting}:outcome-missing",
                    case_id,
                    "Forfalt: utfall av samtale er ikke registrert",
                    f"Samtalen {when}{where} er holdt, men du har ikke registrert om personen møtte.",
                    actions=(
                        f"MØTT {nb_date(starts_on)} – personen møtte",
                        f"IKKE MØTT {nb_date(starts_on)} – personen møtte ikke",
                        "INNKALT <dato> <kl> <sted> – ny innkalling",
                    ),
                    what="meeting-outcome-missing",
                )
            )
        elif starts_on == today and morning:
            found.append(
                Due(
                    f"{meeting}:today",
                    case_id,
                    "Samtale i dag",
                    f"I dag er det samtale: {when}{where}.",
                    ("Svar MØTT eller IKKE MØTT etter samtalen.",),
                    actions=("MØTT – personen møtte", "IKKE MØTT – personen møtte ikke"),
                    what="meeting-today",
                )
            )
        elif today < starts_on <= next_working and gw.calendar.is_working_day(today) and morning:
            found.append(
                Due(
                    f"{meeting}:next-day",
                    case_id,
                    "Samtale neste arbeidsdag",
                    f"Neste arbeidsdag er det samtale: {when}{where}.",
                    ("Svar MØTT eller IKKE MØTT etter samtalen.",),
                    actions=("STATUS – få hele saksarket",),
                    what="meeting-next-day",
                )
            )

    for case_id, uid, deadline in session.execute(
        select(Case.id, Case.uid, Case.attendance_deadline).where(
            Case.status.in_(OPEN_FOR_DEADLINES),
            Case.attendance_deadline.is_not(None),
            Case.attendance_deadline <= horizon,
            Case.attendance_deadline >= today,
        )
    ):
        found.append(
            Due(
                f"case:{uid}:attendance-deadline:{deadline}",
                case_id,
                "Frist for oppmøte nærmer seg",
                f"Fristen for oppmøte er {nb_date(deadline)}. Personen må møte til samtale innen da.",
                actions=("STATUS – se hva som gjenstår i saken",),
                what="attendance-deadline",
            )
        )

    for case_id, uid, deadline in session.execute(
        select(Case.id, Case.uid, Case.attendance_deadline).where(
            Case.status.in_(OPEN_FOR_DEADLINES),
            Case.attendance_deadline.is_not(None),
            Case.attendance_deadline < today,
            Case.attendances < Case.required_attendances,
        )
    ):
        found.append(
            Due(
                f"case:{uid}:attendance-overdue:{deadline}",
                case_id,
                "Forfalt: fristen for oppmøte er passert",
                f"Fristen for oppmøte var {nb_date(deadline)}, og personen har ikke møtt som pålagt.",
                ("Registrer hva som skjedde. Har personen ikke møtt, lages et utkast til varsel.",),
                actions=(
                    "MØTT <dato> – personen møtte",
                    "IKKE MØTT – personen møtte ikke til den avtalte samtalen",
                    "INNKALT <dato> <kl> <sted> – ny innkalling",
                    "STATUS – få hele saksarket",
                ),
                what="attendance-overdue",
            )
        )

    for case_id, uid, end in session.execute(
        select(Case.id, Case.uid, Case.condition_end).where(
            Case.status.in_(NOT_ENDED),
            Case.condition_end.is_not(None),
            Case.condition_end <= horizon,
            Case.condition_end >= today,
        )
    ):
        found.append(
            Due(
                f"case:{uid}:condition-end:{end}",
                case_id,
                "Prøvetiden går ut snart",
                f"Prøvetiden går ut {nb_date(end)}. Avslutt saken når den er ute.",
                actions=("AVSLUTT prøvetiden er ute – når prøvetiden er over", "STATUS – få hele saksarket"),
                what="condition-end",
            )
        )

    for message_id, case_id, created in session.execute(
        select(Notice.message_id, Notice.case_id, Notice.created_at).where(Notice.status == "draft")
    ):
        if gw.calendar.working_days_between(local_today(created), today) >= 1:
            found.append(
                Due(
                    f"notice:{message_id}:awaiting-confirmation",
                    case_id,
                    "Varsel venter på bekreftelse",
                    "Et utkast til varsel til påtalemyndigheten venter på at du bekrefter det.",
                    actions=(
                        "SEND VARSEL – send varselet til påtalemyndigheten",
                        "INNKALT <dato> <kl> <sted> – ny innkalling i stedet for varsel",
                        "STATUS – se utkastet i saksarket",
                    ),
                    what="notice-awaiting-confirmation",
                )
            )

    for order_id, created in session.execute(
        select(OrderRecord.order_id, OrderRecord.sent_at).where(
            OrderRecord.applied_at.is_(None), OrderRecord.message_type != "ny"
        )
    ):
        if gw.calendar.working_days_between(local_today(created), today) >= 2:
            found.append(
                Due(
                    f"order:{order_id}:parked",
                    None,
                    "Endring venter på ordren den gjelder",
                    "Påtalemyndigheten har sendt en endring eller tilbakekalling av en ordre "
                    "som ikke har kommet hit.",
                    (
                        "Kontakt påtalemyndigheten og be om den opprinnelige ordren.",
                        f"Ordrens ID (OrdreId): {order_id}",
                    ),
                    what="order-parked",
                )
            )
    return found


def _log_reminder(session: Session, due: Due, case: Case | None, outbox_id: int) -> None:
    """``reminder summons-overdue for RUS-2026-0042: outbox 57``, once the batch is committed."""
    fields: dict[str, object] = {"outbox_id": outbox_id, "outcome": "enqueued"}
    if case is not None:
        fields["case"] = case.number
    about = f" for {case.number}" if case is not None else ""
    line = "reminder %s%s: outbox %s"
    log_after_commit(session, log, logging.INFO, line, due.what, about, outbox_id, extra=fields)


def tick(gw: Gateway) -> TickReport:
    """Enqueue every due reminder, run the auto-notice policy, and the daily digests."""
    now = gw.clock.now()
    report = TickReport()
    with gw.session() as session:
        report.auto_notices = cases.auto_confirm_due(gw, session)
    with gw.session() as session:
        due = due_reminders(gw, session, now)
    # Short transactions: the write lock (SQLite) is held for one batch at a time, so a
    # staff command or CLI call never waits long behind a large tick.
    for start in range(0, len(due), REMINDER_BATCH):
        batch = due[start : start + REMINDER_BATCH]
        with gw.session() as session:
            keys = [d.key for d in batch]
            sent = set(session.scalars(select(OutboxItem.key).where(OutboxItem.key.in_(keys))))
            for item in batch:
                if item.key in sent:
                    continue
                case = session.get(Case, item.case_id) if item.case_id else None
                alerted = alert(
                    gw,
                    session,
                    item.key,
                    item.subject,
                    item.headline,
                    case=case,
                    lines=item.lines,
                    actions=item.actions,
                )
                if alerted is not None:
                    report.reminders += 1
                    _log_reminder(session, item, case, alerted.id)
    report.digests = digest.enqueue_due(gw, now)
    if report.reminders or report.auto_notices or report.digests:
        log.info(
            "tick: %d reminder(s), %d auto notice(s), %d digest(s)",
            report.reminders,
            len(report.auto_notices),
            report.digests,
        )
    return report
