"""Carrying out what the state machine decided, in the caller's transaction.

``apply_event`` asks ``gateway.domain.lifecycle`` what an event means for the case,
stores the new facts, carries out the notice effects (draft, cancel, queue) and
writes the audit entry. Every change to a case's state goes through it, whichever
door the change came through (CLI, staff mail, intake, the auto policy).
"""

from __future__ import annotations

import logging
import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from gateway.cases.records import audit, breach_rows, current_notice, facts_of, store_facts, unit_settings
from gateway.clock import local_today
from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.delivery import outbox
from gateway.delivery.notices import build_notice_message
from gateway.domain import lifecycle, notices
from gateway.domain.lifecycle import TransitionError
from gateway.effects import NoticeDrafted
from gateway.models import Case, Notice, OutboxItem

log = logging.getLogger(__name__)


def apply_event(
    gw: Gateway,
    session: Session,
    case: Case,
    event: lifecycle.Event,
    actor: str,
    detail: str | None = None,
) -> lifecycle.Transition:
    now = gw.clock.now()
    transition = lifecycle.apply(facts_of(case), event, now)
    store_facts(case, transition.facts, now)
    for effect in transition.effects:
        match effect:
            case lifecycle.DraftNotice(breaches=breaches):
                _draft_notice(gw, session, case, breaches)
            case lifecycle.CancelNotice(reason=reason):
                _cancel_notices(gw, session, case, reason)
            case lifecycle.QueueNotice(breaches=breaches):
                _queue_notice(gw, session, case, breaches, actor)
    name = type(event).__name__
    audit(gw, session, actor, _snake(name), case, detail)
    log_after_commit(
        session,
        log,
        logging.INFO,
        "case %s: %s by %s -> %s",
        case.number,
        _snake(name),
        _actor_kind(actor),
        case.status,
        extra={"case": case.number, "outcome": case.status},
    )
    return transition


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


def _actor_kind(actor: str) -> str:
    """Log who acted without logging a staff member's address."""
    return actor if actor.startswith(("system:", "cli:")) else "staff"


def _draft_notice(
    gw: Gateway, session: Session, case: Case, breaches: tuple[notices.BreachFact, ...]
) -> None:
    now = gw.clock.now()
    unit = unit_settings(gw, case)
    draft = current_notice(case, "draft")
    if draft is None:
        draft = Notice(
            case_id=case.id,
            message_id=str(uuid.uuid4()),
            status="draft",
            breaches=[],
            created_at=now,
        )
        case.notices.append(draft)
    draft.breaches = breach_rows(breaches)
    if unit.notice_policy == "auto":
        draft.auto_send_on = gw.calendar.add_working_days(
            local_today(now), unit.auto_notice_after_working_days
        )
    session.flush()
    gw.emit(session, NoticeDrafted(case, draft))


def _cancel_notices(gw: Gateway, session: Session, case: Case, reason: str) -> None:
    for notice in case.notices:
        if notice.status in ("draft", "queued"):
            notice.status, notice.cancel_reason = "cancelled", reason[:200]
            outbox.cancel_for_notice(session, notice.id, reason)
            log_after_commit(
                session,
                log,
                logging.INFO,
                "case %s: notice %s cancelled (%s)",
                case.number,
                notice.message_id,
                reason,
                extra={"case": case.number, "outcome": "cancelled"},
            )


def route(gw: Gateway, case: Case) -> tuple[str, tuple[str, ...]]:
    """Which channel and address a notice for this case goes to."""
    unit = unit_settings(gw, case)
    district = unit.district_for(case.sender_org_number)
    if district is None:
        raise TransitionError(
            "Ingen mottaker for varsel er satt opp for dette politidistriktet; kontakt driftsansvarlig."
        )
    address = case.reply_address or district.notice_address or district.org_number
    return district.notice_channel, (address,)


def _queue_notice(
    gw: Gateway, session: Session, case: Case, breaches: tuple[notices.BreachFact, ...], actor: str
) -> None:
    notice = current_notice(case, "draft")
    assert notice is not None
    notice.status = "queued"
    notice.breaches = breach_rows(breaches)
    channel, recipients = route(gw, case)
    earlier = session.scalar(
        select(func.count()).select_from(OutboxItem).where(OutboxItem.notice_id == notice.id)
    )
    key = f"notice:{notice.message_id}" + (f":retry{earlier}" if earlier else "")
    message = build_notice_message(gw, case, notice, recipients, key)
    enqueued = outbox.enqueue(
        gw, session, message, kind="notice", channel=channel, case_id=case.id, notice_id=notice.id
    )
    if enqueued is None:
        log.warning("case %s: notice %s was already in the outbox", case.number, key)
