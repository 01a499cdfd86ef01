"""The case side of a notice's trip through the outbox, and the auto-notice policy.

The outbox knows message kinds, not cases. For kind ``notice`` it asks
``NoticeDelivery.may_send`` in the claiming transaction (the last gate before the
police: is every breach still reportable right now?) and tells it of the delivery
or the dead letter. ``gateway.app`` registers it.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway.cases.events import confirm_notice
from gateway.cases.records import audit, facts_of, store_facts
from gateway.cases.transitions import apply_event
from gateway.clock import local_today
from gateway.context import Gateway
from gateway.domain import lifecycle, notices
from gateway.domain.lifecycle import TransitionError
from gateway.effects import NoticeFailed, NoticeSent
from gateway.models import Case, Notice, OutboxItem
from gateway.ports import Receipt

log = logging.getLogger(__name__)


def notice_may_go(gw: Gateway, session: Session, item: OutboxItem) -> bool:
    """The last gate before the police: is every breach still reportable right now?"""
    notice = session.get(Notice, item.notice_id) if item.notice_id else None
    case = session.get(Case, item.case_id) if item.case_id else None
    if notice is None or case is None or notice.status != "queued":
        log.warning("outbox %s: notice no longer queued; not sending", item.id)
        return False
    if not notices.may_send(facts_of(case), notice.breach_facts()):
        notice.status, notice.cancel_reason = "cancelled", "no longer reportable at send time"
        facts = replace(facts_of(case), notice=notices.NoticeState.NONE, notice_breaches=())
        store_facts(
            case,
            lifecycle.settle(facts).facts if facts.status not in lifecycle.ENDED else facts,
            gw.clock.now(),
        )
        log.warning(
            "case %s: notice %s no longer reportable; cancelled",
            case.number,
            notice.message_id,
            extra={"case": case.number, "outbox_id": item.id, "outcome": "cancelled"},
        )
        audit(
            gw,
            session,
            "system:outbox",
            "notice_cancelled",
            case,
            "no longer reportable at send time",
        )
        return False
    return True


def notice_delivered(gw: Gateway, session: Session, notice: Notice, receipt: str | None) -> None:
    """Record a delivery. A delivery is a fact: if the case changed while the notice was
    in flight (attendance registered, closed), the delivery is still recorded, and staff
    are told, rather than the state machine refusing and the send being repeated."""
    case = session.get_one(Case, notice.case_id)
    notice.status, notice.sent_at, notice.receipt = "sent", gw.clock.now(), receipt
    facts = facts_of(case)
    if facts.notice is notices.NoticeState.QUEUED and facts.status not in lifecycle.ENDED:
        apply_event(gw, session, case, lifecycle.NoticeDelivered(), "system:outbox", receipt)
    else:
        facts = replace(facts, notice=notices.NoticeState.SENT, notice_breaches=())
        store_facts(
            case,
            lifecycle.settle(facts).facts if facts.status not in lifecycle.ENDED else facts,
            gw.clock.now(),
        )
        audit(gw, session, "system:outbox", "notice_delivered_after_change", case, receipt)
        log.warning(
            "case %s: notice %s was delivered after the case changed",
            case.number,
            notice.message_id,
            extra={"case": case.number, "outcome": "sent"},
        )
    gw.emit(session, NoticeSent(case, notice))


def notice_failed(gw: Gateway, session: Session, notice: Notice, reason: str) -> None:
    """A dead notice goes back to draft (same MeldingId) so staff can fix the cause
    and confirm again; the police side dedupes on MeldingId."""
    case = session.get_one(Case, notice.case_id)
    if case.status not in (s.value for s in lifecycle.ENDED) and case.notice_state == "queued":
        notice.status = "draft"
        case.notice_state = notices.NoticeState.DRAFT.value
    else:
        notice.status = "dead"
    notice.cancel_reason = reason[:200]
    audit(gw, session, "system:outbox", "notice_failed", case, reason)
    gw.emit(session, NoticeFailed(case, reason))


def auto_confirm_due(gw: Gateway, session: Session) -> list[str]:
    """Units with the ``auto`` policy: confirm drafts whose waiting time has run out."""
    today = local_today(gw.clock.now())
    done = []
    for notice in session.scalars(
        select(Notice).where(
            Notice.status == "draft", Notice.auto_send_on.is_not(None), Notice.auto_send_on <= today
        )
    ):
        case = session.get_one(Case, notice.case_id)
        try:
            confirm_notice(gw, session, case, "system:auto-policy")
            done.append(case.number)
        except TransitionError as exc:
            log.warning("case %s: auto notice not sent: %s", case.number, exc)
            notice.auto_send_on = None
    return done


class NoticeDelivery:
    """The outbox's handler for kind ``notice`` (registered in ``gateway.app``)."""

    def may_send(self, gw: Gateway, session: Session, item: OutboxItem) -> bool:
        return notice_may_go(gw, session, item)

    def delivered(self, gw: Gateway, session: Session, item: OutboxItem, receipt: Receipt) -> None:
        if item.notice_id is not None:
            notice_delivered(gw, session, session.get_one(Notice, item.notice_id), item.receipt)

    def failed(self, gw: Gateway, session: Session, item: OutboxItem, reason: str) -> None:
        if item.notice_id is not None:
            notice_failed(gw, session, session.get_one(Notice, item.notice_id), reason)
