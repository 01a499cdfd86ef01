"""The daily digest: one mail per unit per day listing open cases and what is next.

It carries case numbers, statuses and dates, and as much of each person's name as the
unit's ``staff_names`` allows (initials by default); never an identity number.
It is due once the local time passes ``gateway.digest_time``; its key
``digest:<unit>:<date>`` makes it once a day even if the daemon was down at that
moment or two instances run. Each digest enqueued leaves one line
(``digest for unit enhet, 2026-12-03: outbox 57``) without personal data.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.clock import OSLO, local_today
from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.models import Case, OutboxItem, Person, QuarantineEntry, Unit
from gateway.staff.mailer import send
from gateway.texts import render, shown_name

log = logging.getLogger(__name__)

ACTIVE = (
    "needs_registration",
    "awaiting_summons",
    "summoned",
    "noncompliant",
    "fulfilled",
    "notified",
)


def enqueue_due(gw: Gateway, now: datetime) -> int:
    local = now.astimezone(OSLO)
    if local.time() < gw.settings.gateway.digest_time or not gw.calendar.is_working_day(local.date()):
        return 0
    made = 0
    for unit in gw.settings.units:
        key = f"digest:{unit.code}:{local.date().isoformat()}"
        with gw.session() as session:
            if session.scalar(select(OutboxItem.id).where(OutboxItem.key == key)) is not None:
                continue
            body = render_digest(gw, session, unit.code, local.date())
            item = send(
                gw,
                session,
                key=key,
                subject=f"Daglig oversikt {unit.name} {local.day}.{local.month}.{local.year}",
                body=body,
                unit_code=unit.code,
                kind="digest",
            )
            if item is not None:
                made += 1
                fields = {"outbox_id": item.id, "outcome": "enqueued"}
                line = "digest for unit %s, %s: outbox %s"
                log_after_commit(
                    session, log, logging.INFO, line, unit.code, local.date(), item.id, extra=fields
                )
    return made


# Cases listed per status; the rest are counted and left to ``russak cases``. A digest
# of every case at 100,000 was a 6 MB mail no one would read.
SHOWN_PER_STATUS = 200


def render_digest(gw: Gateway, session: Session, unit_code: str, today: date) -> str:
    """The digest's text: per active status the count and the first cases by number.

    Only the cases shown are read (and their names decrypted): the first
    ``SHOWN_PER_STATUS`` of each status, after one count per status. Reading every open
    case to show 200 of each cost seconds and left its high-water mark in the daemon's
    memory once there were tens of thousands (the soak, docs/performance.md).
    """
    unit_id = session.scalar(select(Unit.id).where(Unit.code == unit_code))
    counted = session.execute(
        select(Case.status, func.count())
        .where(Case.unit_id == unit_id, Case.status.in_(ACTIVE))
        .group_by(Case.status)
    )
    counts: dict[str, int] = {status: number for status, number in counted}
    rows = [
        row
        for status in ACTIVE
        if counts.get(status)
        for row in session.execute(
            select(
                Case.number,
                Case.status,
                Case.first_meeting_target,
                Case.attendance_deadline,
                Case.condition_end,
                Case.next_meeting_at,
                Case.minor,
                Case.attendances,
                Case.required_attendances,
                Person.first_name,
                Person.last_name,
            )
            .outerjoin(Person, Person.case_id == Case.id)
            .where(Case.unit_id == unit_id, Case.status == status)
            .order_by(Case.number)
            .limit(SHOWN_PER_STATUS)
        )
    ]
    quarantined = (
        session.scalar(select(QuarantineEntry.id).where(QuarantineEntry.released_at.is_(None)).limit(1))
        is not None
    )
    groups: dict[str, list[dict[str, object]]] = {s: [] for s in ACTIVE}
    names = gw.settings.unit(unit_code).staff_names
    for number, status, target, deadline, end, meeting, minor, attended, required, first, last in rows:
        full = f"{first or ''} {last or ''}".strip()
        groups[status].append(
            {
                "number": number,
                "name": shown_name(full, names),
                "target": target,
                "deadline": deadline,
                "end": end,
                "meeting": meeting,
                "minor": minor,
                "late": target is not None
                and target < today
                and status in ("awaiting_summons", "needs_registration"),
                "deadline_overdue": deadline is not None
                and deadline < today
                and attended < required
                and status in ("needs_registration", "awaiting_summons", "summoned", "noncompliant"),
                "meeting_overdue": meeting is not None and local_today(meeting) < today,
            }
        )
    return render(
        "digest.txt.j2",
        groups=groups,
        counts=counts,
        today=today,
        quarantined=quarantined,
        unit=gw.settings.unit(unit_code),
    )
