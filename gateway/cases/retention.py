"""Retention: personal data goes a fixed time after a case ends.

A case is purged ``retention_days`` after it ended (closed, withdrawn) or after its
condition period ended, whichever comes first. What remains is one
``CaseStatistic`` row with counts and months, nothing that names a person. Case
documents belong in the municipality's archive (Noark 5) before that; the ops
guide says so.

Everything the purge clears, in one place (``purge`` does them in this order; the
test that fills every column and file with marked data checks the list):

1. purgeable cases (ended, or condition period over, ``retention_days`` ago) and
   letter cases never registered ``retention_days`` after they came: the case row
   and with it the person, guardians, meetings, summonses, tests and notices; the
   originals of its inbound messages; its order records; its outbox payloads and
   errors; the details of its audit entries;
2. parked amendments whose order never came: the record and the original;
3. quarantine entries older than ``retention_days``: the entry and the original;
4. every other stored original older than ``retention_days`` (duplicates, ignored
   mail, commands), every old outbox payload and ``last_error``, old intake attempts;
5. each channel's own copies (the spool's ``processed/`` and ``rejected/`` folders),
   through the channel's ``purge(before)`` where it has one.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, select, update
from sqlalchemy.orm import Session

from gateway.clock import local_today
from gateway.context import Gateway
from gateway.models import (
    AuditEntry,
    Case,
    CaseStatistic,
    InboundMessage,
    IntakeAttempt,
    OrderRecord,
    OutboxItem,
    QuarantineEntry,
)
from gateway.ports import ChannelError

log = logging.getLogger(__name__)


@dataclass
class PurgeReport:
    cases: list[str] = field(default_factory=list)
    inbound: int = 0
    quarantine: int = 0
    outbox: int = 0
    parked: int = 0
    channel_files: int = 0


def purgeable(session: Session, now: datetime, retention_days: int) -> list[Case]:
    cutoff = now - timedelta(days=retention_days)
    cutoff_day = local_today(cutoff)
    return list(
        session.scalars(
            select(Case).where(
                or_(
                    Case.ended_at < cutoff,
                    Case.condition_end < cutoff_day,
                    (Case.status == "needs_registration") & (Case.created_at < cutoff),
                )
            )
        )
    )


def _statistic(case: Case, now: datetime) -> CaseStatistic:
    first = min((m.starts_on for m in case.meetings if m.outcome == "attended"), default=None)
    return CaseStatistic(
        unit_code=case.unit.code,
        kommunenummer=case.kommunenummer,
        reaction=case.reaction,
        minor=case.minor,
        opened_month=case.created_at.strftime("%Y-%m"),
        ended_month=case.ended_at.strftime("%Y-%m") if case.ended_at else None,
        final_status=case.status,
        attendances=sum(1 for m in case.meetings if m.outcome == "attended"),
        no_shows=sum(1 for m in case.meetings if m.outcome == "no_show"),
        tests_taken=sum(1 for t in case.tests if t.taken),
        tests_missed=sum(1 for t in case.tests if not t.taken),
        notices_sent=sum(1 for n in case.notices if n.status == "sent"),
        days_to_first_meeting=(first - case.created_at.date()).days if first else None,
        purged_at=now,
    )


def purge(gw: Gateway, *, dry_run: bool = False) -> PurgeReport:
    now = gw.clock.now()
    days = gw.settings.gateway.retention_days
    report = PurgeReport()
    with gw.session() as session:
        for case in purgeable(session, now, days):
            report.cases.append(case.number)
            if dry_run:
                continue
            session.add(_statistic(case, now))
            report.inbound += _drop_inbound(session, case.id)
            session.execute(delete(OrderRecord).where(OrderRecord.case_id == case.id))
            report.outbox += _drop_outbox(session, case.id)
            session.execute(
                update(AuditEntry).where(AuditEntry.case_number == case.number).values(detail=None)
            )
            session.add(
                AuditEntry(
                    at=now,
                    actor="system:retention",
                    case_number=case.number,
                    action="purged",
                    detail=f"personal data removed after {days} days",
                )
            )
            session.delete(case)
        cutoff = now - timedelta(days=days)
        old_q = select(QuarantineEntry.inbound_id).where(QuarantineEntry.received_at < cutoff)
        if dry_run:
            report.quarantine = len(session.scalars(old_q).all())
        else:
            ids = list(session.scalars(old_q))
            if ids:
                session.execute(delete(QuarantineEntry).where(QuarantineEntry.inbound_id.in_(ids)))
                session.execute(update(InboundMessage).where(InboundMessage.id.in_(ids)).values(content=None))
            report.quarantine = len(ids)
            report.parked = _drop_parked(session, cutoff)
            # Originals of messages that never became a case (duplicates, ignored mail).
            session.execute(
                update(InboundMessage)
                .where(InboundMessage.received_at < cutoff, InboundMessage.case_id.is_(None))
                .values(content=None)
            )
            session.execute(
                update(OutboxItem)
                .where(
                    OutboxItem.created_at < cutoff,
                    OutboxItem.status.in_(("sent", "dead", "cancelled")),
                )
                .values(payload=None, last_error=None)
            )
            session.execute(delete(IntakeAttempt).where(IntakeAttempt.last_at < cutoff))
    if not dry_run:
        report.channel_files = _purge_channels(gw, cutoff)
    if (report.cases or report.parked or report.channel_files) and not dry_run:
        log.info(
            "purge: personal data removed for %d case(s), %d parked amendment(s), %d channel file(s)",
            len(report.cases),
            report.parked,
            report.channel_files,
        )
    return report


def _drop_parked(session: Session, cutoff: datetime) -> int:
    """Amendments that waited ``retention_days`` for an order that never came."""
    parked = session.scalars(
        select(OrderRecord).where(OrderRecord.applied_at.is_(None), OrderRecord.sent_at < cutoff)
    ).all()
    inbound_ids = [r.inbound_id for r in parked if r.inbound_id is not None]
    if inbound_ids:
        session.execute(update(InboundMessage).where(InboundMessage.id.in_(inbound_ids)).values(content=None))
    for record in parked:
        session.delete(record)
    return len(parked)


def _purge_channels(gw: Gateway, cutoff: datetime) -> int:
    """Channels that keep copies of their own (the spool's processed/ and rejected/)."""
    removed = 0
    for entry in gw.settings.channels:
        purge = getattr(gw.channel(entry.name), "purge", None)
        if callable(purge):
            try:
                removed += int(purge(cutoff))
            except ChannelError as exc:
                log.warning("purge: channel %s could not remove its old files: %s", entry.name, exc)
    return removed


def _drop_inbound(session: Session, case_id: int) -> int:
    ids = list(session.scalars(select(InboundMessage.id).where(InboundMessage.case_id == case_id)))
    if ids:
        session.execute(
            update(InboundMessage).where(InboundMessage.id.in_(ids)).values(content=None, case_id=None)
        )
    return len(ids)


def _drop_outbox(session: Session, case_id: int) -> int:
    session.execute(
        update(OutboxItem)
        .where(OutboxItem.case_id == case_id, OutboxItem.status == "pending")
        .values(status="cancelled")
    )
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.case_id == case_id)
        .values(payload=None, case_id=None, notice_id=None, last_error="case purged")
    )
    return int(getattr(result, "rowcount", 0) or 0)
