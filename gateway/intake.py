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

import json
import logging
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway import cases, staff
from gateway.config import Unit as UnitSettings
from gateway.domain.identifiers import find_identity_numbers
from gateway.domain.lifecycle import ENDED, Status, TransitionError
from gateway.mail import MailContent, MailError, parse_mail
from gateway.models import Case, InboundMessage, OrderRecord, QuarantineEntry
from gateway.orders import Order, OrderError, looks_like_order, parse_order
from gateway.ports import RawMessage

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger(__name__)

CASE_TAG = re.compile(r"\[(RUS-\d{4}-\d{4,})\]", re.IGNORECASE)
_CASE_REF = re.compile(r"\b(\d{8,12}|\d{2,4}[-/]\d{3,8}(?:[-/]\d{1,4})?)\b")
_DATE = re.compile(r"\b(\d{1,2}\.\d{1,2}\.\d{4}|\d{4}-\d{2}-\d{2})\b")


@dataclass(frozen=True)
class IntakeResult:
    outcome: str  # case amended withdrawn parked duplicate duplicate_order quarantined command ignored letter
    case_number: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        """``outcome[ CASE][ reason]``, as ``russak ingest`` and the log print it."""
        return " ".join(p for p in (self.outcome, self.case_number, self.reason) if p)


class _Quarantine(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


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
    except _Quarantine as q:
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


def quarantine(gw: Gateway, session: Session, inbound: InboundMessage, reason: str) -> IntakeResult:
    entry = QuarantineEntry(
        inbound_id=inbound.id,
        channel=inbound.channel,
        reason=reason[:500],
        received_at=inbound.received_at,
    )
    session.add(entry)
    session.flush()
    staff.alert_quarantine(gw, session, entry.id, inbound.channel, reason)
    return IntakeResult("quarantined", reason=reason)


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


# Judging ------------------------------------------------------------------------------


def _judge(gw: Gateway, session: Session, message: RawMessage, inbound: InboundMessage) -> IntakeResult:
    if message.metadata.get("truncated") == "true":
        raise _Quarantine(f"message too large ({message.metadata.get('size', '?')} bytes)")
    if message.kind == "xml":
        return _order_bytes(gw, session, message.content, inbound)
    try:
        mail = parse_mail(message.content)
    except MailError as exc:
        raise _Quarantine(f"unreadable mail: {exc}") from exc
    return _mail(gw, session, mail, inbound)


def _police_unit(gw: Gateway, sender: str | None) -> UnitSettings | None:
    """The unit whose police district lists this sender (address or @domain)."""
    if not sender:
        return None
    sender = sender.lower()
    for unit in gw.settings.units:
        for district in unit.police:
            for allowed in district.sender_addresses:
                allowed = allowed.lower()
                if sender == allowed or (allowed.startswith("@") and sender.endswith(allowed)):
                    return unit
    return None


def _staff_units(gw: Gateway, sender: str | None) -> list[UnitSettings]:
    if not sender:
        return []
    return [u for u in gw.settings.units if sender.lower() in u.staff]


def _mail(gw: Gateway, session: Session, mail: MailContent, inbound: InboundMessage) -> IntakeResult:
    staff_sender = bool(_staff_units(gw, mail.sender))
    orders = [x for x in mail.xml_attachments if looks_like_order(x)]
    tagged = CASE_TAG.search(mail.subject or "") is not None
    if staff_sender and (tagged or not orders):
        from gateway import commands

        return commands.handle(gw, session, mail, inbound)
    police_unit = _police_unit(gw, mail.sender)
    if orders:
        # From the police, or forwarded by allow-listed staff (who may already confirm
        # notices, so a forwarded order asks no more trust of them).
        if police_unit is None and not staff_sender:
            raise _Quarantine("order by e-mail from a sender that is not an allowed police or staff address")
        results = [_order_bytes(gw, session, x, inbound) for x in orders]
        if len(results) == 1:
            return results[0]
        return IntakeResult("multiple", reason="; ".join(r.describe() for r in results))
    if police_unit is not None:
        return _letter(gw, session, mail, police_unit)
    if tagged:
        log.warning("intake: command-like mail from an address that is not allow-listed; ignored (no reply)")
        return IntakeResult("ignored", reason="command from an address that is not allow-listed")
    raise _Quarantine("mail is neither an order nor from an allowed police or staff address")


def _letter(gw: Gateway, session: Session, mail: MailContent, unit: UnitSettings) -> IntakeResult:
    text = f"{mail.subject}\n{mail.body_text}"
    suggestions = {
        "national_ids": find_identity_numbers(text)[:5],
        "case_references": list(
            dict.fromkeys(m.group(1) for m in _CASE_REF.finditer(text) if len(m.group(1)) != 11)
        )[:5],
        "dates": list(dict.fromkeys(m.group(1) for m in _DATE.finditer(text)))[:10],
        "attachments": list(mail.other_attachments)[:10],
    }
    case = cases.open_letter_case(gw, session, unit, suggestions, mail.sender)
    return IntakeResult("letter", case.number, "needs registration")


def _order_bytes(gw: Gateway, session: Session, data: bytes, inbound: InboundMessage) -> IntakeResult:
    try:
        order = parse_order(data, max_bytes=gw.settings.gateway.max_order_bytes)
    except OrderError as exc:
        raise _Quarantine(f"invalid order: {exc}") from exc
    if session.scalar(select(OrderRecord.id).where(OrderRecord.order_id == order.order_id)) is not None:
        return IntakeResult("duplicate_order", reason=f"OrdreId {order.order_id} already received")
    record = OrderRecord(
        order_id=order.order_id,
        message_type=order.message_type,
        refers_to=order.refers_to,
        sent_at=order.sent,
        inbound_id=inbound.id,
        payload=order.to_json(),
    )
    session.add(record)
    session.flush()
    if order.message_type == "ny":
        return _new_order(gw, session, order, record)
    target = session.scalar(select(Case).where(Case.order_id == order.refers_to))
    if target is None:
        log.info("intake: %s %s names an order not seen yet; parked", order.message_type, order.order_id)
        return IntakeResult("parked", reason=f"waits for order {order.refers_to}")
    return _apply_amendment(gw, session, target, order, record)


def _new_order(gw: Gateway, session: Session, order: Order, record: OrderRecord) -> IntakeResult:
    unit = gw.settings.unit_for(order.recipient_org_number, order.recipient_kommunenummer)
    if unit is None:
        raise _Quarantine("no configured unit serves the order's recipient (org number / kommunenummer)")
    case = cases.open_case_from_order(gw, session, order, unit)
    record.case_id, record.applied_at = case.id, gw.clock.now()
    parked = session.scalars(
        select(OrderRecord)
        .where(OrderRecord.refers_to == order.order_id, OrderRecord.applied_at.is_(None))
        .order_by(OrderRecord.sent_at, OrderRecord.id)
    ).all()
    for pending in parked:
        assert pending.payload is not None
        _apply_amendment(gw, session, case, Order.from_json(pending.payload), pending)
    return IntakeResult("case", case.number, f"{len(parked)} parked change(s) applied" if parked else None)


def _apply_amendment(
    gw: Gateway, session: Session, case: Case, order: Order, record: OrderRecord
) -> IntakeResult:
    record.case_id, record.applied_at = case.id, gw.clock.now()
    if Status(case.status) in ENDED:
        return IntakeResult("ignored", case.number, f"{order.message_type} for a case already {case.status}")
    if order.message_type == "tilbakekall":
        cases.withdraw(gw, session, case, order.order_id)
        return IntakeResult("withdrawn", case.number)
    newer = session.scalar(
        select(OrderRecord.id).where(
            OrderRecord.case_id == case.id,
            OrderRecord.message_type == "endring",
            OrderRecord.applied_at.is_not(None),
            OrderRecord.sent_at > order.sent,
            OrderRecord.id != record.id,
        )
    )
    if newer is not None:
        return IntakeResult("ignored", case.number, "an endring sent later was already applied")
    try:
        cases.amend(gw, session, case, order)
    except TransitionError as exc:
        return IntakeResult("ignored", case.number, str(exc))
    return IntakeResult("amended", case.number)


def suggestions_of(case: Case) -> dict[str, list[str]]:
    return json.loads(case.suggestions) if case.suggestions else {}
