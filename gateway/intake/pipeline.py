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
import time

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import db
from gateway.context import Gateway
from gateway.intake.identity import automatic_reason, mail_identity
from gateway.intake.orders import take_order
from gateway.intake.quarantine import Quarantine, quarantine
from gateway.intake.router import route_mail
from gateway.messages.mail import MailError, parse_mail
from gateway.messages.results import IntakeResult
from gateway.models import Case, InboundMessage, IntakeAttempt
from gateway.ports import RawMessage

log = logging.getLogger("gateway.intake")  # the name operators grep for


_STORAGE_LOG_EVERY = 60.0
_last_storage_log = -_STORAGE_LOG_EVERY


def process(gw: Gateway, message: RawMessage) -> IntakeResult:
    """Take one message through intake in one transaction; never raises for bad input.

    The attempt is recorded (and committed) first. A message that kills the process
    (a parser bug, memory exhaustion) is therefore recognised when it comes round
    again after the restart, and after ``gateway.max_intake_attempts`` (3) it goes to quarantine instead
    of looping the daemon. A full disk is not the message's fault: it stays at its
    source and is taken on a later poll, with one log line a minute, not one per
    message.
    """
    where = (message.channel, short_id(message.external_id))
    try:
        attempts = _record_attempt(gw, message)
    except Exception as exc:
        return storage_trouble(exc, where)
    if attempts > gw.settings.gateway.max_intake_attempts:
        log.error("intake %s/%s: crashed the gateway %d times; quarantining", *where, attempts - 1)
        return _quarantine_after_crash(gw, message, f"crashed the gateway {attempts - 1} times")
    try:
        with gw.session() as session:
            result = take_in(gw, session, message)
            clear_attempt(session, message)
    except IntegrityError:
        # Most likely a concurrent instance took the same message first. Only call it a
        # duplicate if that message really is stored; otherwise leave it at its source
        # (outcome "error" is not acknowledged) and take it again on the next poll.
        with gw.session() as session:
            if _find_inbound(session, message) is not None:
                clear_attempt(session, message)
                log.info("intake %s/%s: taken in by another instance; no-op", *where)
                return IntakeResult("duplicate")
        log.warning("intake %s/%s: conflict with a concurrent change; will retry", *where)
        return IntakeResult("error", reason="database conflict; retried on the next poll")
    except Exception as exc:
        if db.is_storage_full(exc) or db.is_read_only(exc):
            return storage_trouble(exc, where)
        log.exception("intake %s/%s: internal error; quarantining", *where)
        return _quarantine_after_crash(
            gw, message, f"internal error ({type(exc).__name__}); see the daemon log"
        )
    log_result(message, result)
    return result


def log_result(message: RawMessage, result: IntakeResult) -> None:
    """The one line per message an operator greps for: ``intake <channel>/<id>: <outcome> …``."""
    fields = {"channel": message.channel, "outcome": result.outcome}
    if result.case_number:
        fields["case"] = result.case_number
    where = (message.channel, short_id(message.external_id))
    log.info("intake %s/%s: %s", *where, result.describe(), extra=fields)


_STORAGE_REASONS = ("storage full", "database not writable")


def is_storage_trouble(result: IntakeResult) -> bool:
    """The message was not taken because the database cannot be written right now."""
    return result.outcome == "error" and (result.reason or "").startswith(_STORAGE_REASONS)


def storage_trouble(exc: Exception, where: tuple[str, str]) -> IntakeResult:
    """Storage full or read-only: one clear line a minute; the message waits at its source."""
    global _last_storage_log
    full = db.is_storage_full(exc)
    what = "storage full" if full else "database not writable"
    if not (full or db.is_read_only(exc)):
        log.error(
            "intake %s/%s: cannot record the attempt; will retry on the next poll", *where, exc_info=exc
        )
        return IntakeResult("error", reason="database unavailable; retried on the next poll")
    now = time.monotonic()
    if now - _last_storage_log >= _STORAGE_LOG_EVERY:
        _last_storage_log = now
        log.error(
            "intake paused: %s (%s); free space or fix permissions on the database volume. "
            "Nothing is lost: messages stay at their source until then",
            what,
            type(exc).__name__,
        )
    return IntakeResult("error", reason=f"{what}; retried on the next poll")


def _record_attempt(gw: Gateway, message: RawMessage) -> int:
    """Count this attempt (committed before processing). Two instances may take the same
    message at once: the insert that loses the race counts on the winner's row."""
    now = gw.clock.now()
    bump = (
        update(IntakeAttempt)
        .where(IntakeAttempt.channel == message.channel, IntakeAttempt.external_id == message.external_id)
        .values(attempts=IntakeAttempt.attempts + 1, last_at=now)
        .returning(IntakeAttempt.attempts)
    )
    with gw.session() as session:
        attempts = session.scalar(bump)
        if attempts is not None:
            return int(attempts)
        try:
            with session.begin_nested():
                session.add(
                    IntakeAttempt(
                        channel=message.channel, external_id=message.external_id, attempts=1, last_at=now
                    )
                )
            return 1
        except IntegrityError:
            # the other instance's row; gone again if it already finished the message
            # (which this attempt will then find taken in, as a duplicate)
            attempts = session.scalar(bump)
            return 1 if attempts is None else int(attempts)


def clear_attempt(session: Session, message: RawMessage) -> None:
    """The message was settled in this transaction: it is no longer a crash suspect."""
    session.execute(
        delete(IntakeAttempt).where(
            IntakeAttempt.channel == message.channel, IntakeAttempt.external_id == message.external_id
        )
    )


def short_id(external_id: str) -> str:
    return external_id[:24]


def take_in(gw: Gateway, session: Session, message: RawMessage) -> IntakeResult:
    """Store and judge one message in ``session`` (the caller commits)."""
    existing = _find_inbound(session, message)
    if existing is not None:
        log.info(
            "intake %s/%s: already taken in (%s); no-op",
            message.channel,
            short_id(message.external_id),
            existing.outcome,
        )
        return IntakeResult("duplicate", reason=f"already received as message {existing.id}")
    inbound = _new_inbound(gw, message, "processing")
    session.add(inbound)
    session.flush()
    mark = db.after_commit_mark(session)
    try:
        # A savepoint: if the message ends in quarantine, nothing it half-did (an order
        # record, a case, its log lines) survives, so the same order can be taken in once fixed.
        with session.begin_nested():
            result = _judge(gw, session, message, inbound)
    except Quarantine as q:
        db.drop_after_commit(session, mark)
        result = quarantine(gw, session, inbound, q.reason)
    inbound.outcome = result.outcome
    inbound.detail = (result.reason or "")[:500] or None
    if result.case_number and inbound.case_id is None:
        inbound.case_id = session.scalar(select(Case.id).where(Case.number == result.case_number))
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
            clear_attempt(session, message)
            return quarantine(gw, session, inbound, reason)
    except Exception:
        log.exception(
            "intake %s/%s: could not even quarantine; will retry on next poll",
            message.channel,
            short_id(message.external_id),
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
