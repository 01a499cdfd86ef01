"""Intake: a RawMessage becomes a case, a change to a case, a command, or quarantine.

Idempotent twice over: a message is keyed by ``(channel, external_id)`` and an order
by its ``OrdreId``, both with unique constraints, so a re-delivered message or a
re-sent order is a recorded no-op. An ``endring`` or ``tilbakekall`` that arrives
before the order it names is parked and applied the moment that order arrives.

Nothing is dropped and nothing stops the loop: every message is stored (encrypted)
before it is judged, anything that cannot be used goes to quarantine with a reason
and a staff alert, and an unexpected exception (a bug) quarantines the message in a
fresh transaction instead of blocking the channel.
"""

from __future__ import annotations

import logging

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.intake.identity import automatic_reason, mail_identity
from gateway.intake.orders import take_order
from gateway.intake.quarantine import Quarantine, quarantine
from gateway.intake.router import route_mail
from gateway.messages.mail import MailError, parse_mail
from gateway.messages.results import IntakeResult
from gateway.models import Case, InboundMessage
from gateway.ports import RawMessage

log = logging.getLogger("gateway.intake")  # the name operators grep for


def process(gw: Gateway, message: RawMessage) -> IntakeResult:
    """Take one message through intake in one transaction; never raises for bad input."""
    try:
        with gw.session() as session:
            return _process(gw, session, message)
    except IntegrityError:
        # Most likely a concurrent instance took the same message first. Only call it a
        # duplicate if that message really is stored; otherwise leave it at its source
        # (outcome "error" is not acknowledged) and take it again on the next poll.
        where = (message.channel, _short(message.external_id))
        with gw.session() as session:
            if _find_inbound(session, message) is not None:
                log.info("intake %s/%s: taken in by another instance; no-op", *where)
                return IntakeResult("duplicate")
        log.warning("intake %s/%s: conflict with a concurrent change; will retry", *where)
        return IntakeResult("error", reason="database conflict; retried on the next poll")
    except Exception as exc:
        log.exception(
            "intake %s/%s: internal error; quarantining",
            message.channel,
            _short(message.external_id),
        )
        return _quarantine_after_crash(
            gw, message, f"internal error ({type(exc).__name__}); see the daemon log"
        )


def _short(external_id: str) -> str:
    return external_id[:24]


def _process(gw: Gateway, session: Session, message: RawMessage) -> IntakeResult:
    existing = _find_inbound(session, message)
    if existing is not None:
        log.info(
            "intake %s/%s: already taken in (%s); no-op",
            message.channel,
            _short(message.external_id),
            existing.outcome,
        )
        return IntakeResult("duplicate", reason=f"already received as message {existing.id}")
    inbound = _new_inbound(gw, message, "processing")
    session.add(inbound)
    session.flush()
    try:
        # A savepoint: if the message ends in quarantine, nothing it half-did (an order
        # record, a case) survives, so the same order can be taken in once fixed.
        with session.begin_nested():
            result = _judge(gw, session, message, inbound)
    except Quarantine as q:
        result = quarantine(gw, session, inbound, q.reason)
    inbound.outcome = result.outcome
    inbound.detail = (result.reason or "")[:500] or None
    if result.case_number:
        inbound.case_id = session.scalar(select(Case.id).where(Case.number == result.case_number))
    log.info("intake %s/%s: %s", message.channel, _short(message.external_id), result.describe())
    return result


def _find_inbound(session: Session, message: RawMessage) -> InboundMessage | None:
    return session.scalar(
        select(InboundMessage).where(
            InboundMessage.channel == message.channel, InboundMessage.external_id == message.external_id
        )
    )


def _new_inbound(gw: Gateway, message: RawMessage, outcome: str, detail: str | None = None) -> InboundMessage:
    """The stored (encrypted) original: every message is kept before it is judged."""
    return InboundMessage(
        channel=message.channel,
        external_id=message.external_id,
        kind=message.kind,
        received_at=gw.clock.now(),
        size=len(message.content),
        content=message.content,
        outcome=outcome,
        detail=detail,
    )


def _quarantine_after_crash(gw: Gateway, message: RawMessage, reason: str) -> IntakeResult:
    try:
        with gw.session() as session:
            if _find_inbound(session, message) is not None:
                return IntakeResult("duplicate")
            inbound = _new_inbound(gw, message, "quarantined", reason)
            session.add(inbound)
            session.flush()
            return quarantine(gw, session, inbound, reason)
    except Exception:
        log.exception(
            "intake %s/%s: could not even quarantine; will retry on next poll",
            message.channel,
            _short(message.external_id),
        )
        return IntakeResult("error", reason=reason)


def _judge(gw: Gateway, session: Session, message: RawMessage, inbound: InboundMessage) -> IntakeResult:
    if message.metadata.get("truncated") == "true":
        raise Quarantine(f"message too large ({message.metadata.get('size', '?')} bytes)")
    if message.kind == "xml":
        return take_order(gw, session, message.content, inbound)
    try:
        mail = parse_mail(message.content)
    except MailError as exc:
        raise Quarantine(f"unreadable mail: {exc}") from exc
    key = mail_identity(mail)
    earlier = session.scalar(select(InboundMessage.id).where(InboundMessage.dedupe_key == key))
    if earlier is not None:
        return IntakeResult("duplicate", reason=f"the same mail was already received as message {earlier}")
    inbound.dedupe_key = key
    session.flush()
    return route_mail(gw, session, mail, inbound, automatic=automatic_reason(message.content))
