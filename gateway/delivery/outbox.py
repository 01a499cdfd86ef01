"""The outbox: every outbound message is a row before it is a send.

``enqueue`` runs inside the caller's transaction, so the message exists if and only
if the state change that caused it was committed. ``dispatch_due`` then claims rows
one at a time with a lease (a conditional UPDATE whose row count proves the claim),
sends outside any transaction, and records the receipt in a new one. A dispatcher
killed mid-send leaves a lease that expires, and the row is sent again with the same
idempotency key, which every channel honours: at least once, effect once.

The outbox knows message kinds, not cases: for each claimed row it asks the
handler registered for its kind (``Gateway.handlers.delivery``) whether it may
still go, in the claiming transaction, and tells it of the delivery or the dead
letter. For notices that handler is the case services' last gate
(``gateway.domain.notices.may_send``), so a case that has since been fulfilled,
withdrawn or closed never reaches the police.

Each attempt leaves one line naming the row: ``outbox 42 (notice) delivered via spool,
attempt 1, 12 ms`` at info, the transient failure at warning, the dead letter at error,
a row no longer to be sent at info. They carry ``channel``, ``outbox_id``, ``attempt``,
``duration_ms`` (of the send), ``outcome`` (``sent``, ``retried``, ``dead``,
``cancelled``, as the metrics name them) and ``case`` (the case number, when the row
belongs to a case) as ``extra`` fields, which the JSON log keeps as keys; never a
recipient, subject or body.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.db import log_after_commit
from gateway.delivery.retry import backoff
from gateway.models import Case, OutboxItem
from gateway.ports import (
    Attachment,
    ChannelError,
    OutboundMessage,
    Receipt,
    TransientError,
)
from gateway.privacy import redact

log = logging.getLogger(__name__)


def encode_message(message: OutboundMessage) -> bytes:
    return json.dumps(
        {
            "key": message.key,
            "kind": message.kind,
            "recipients": list(message.recipients),
            "subject": message.subject,
            "body": message.body,
            "headers": dict(message.headers),
            "attachments": [
                {
                    "filename": a.filename,
                    "content_type": a.content_type,
                    "data": base64.b64encode(a.data).decode("ascii"),
                }
                for a in message.attachments
            ],
        }
    ).encode("utf-8")


def decode_message(data: bytes) -> OutboundMessage:
    raw = json.loads(data)
    return OutboundMessage(
        key=raw["key"],
        kind=raw["kind"],
        recipients=tuple(raw["recipients"]),
        subject=raw["subject"],
        body=raw["body"],
        headers=raw["headers"],
        attachments=tuple(
            Attachment(a["filename"], a["content_type"], base64.b64decode(a["data"]))
            for a in raw["attachments"]
        ),
    )


def enqueue(
    gw: Gateway,
    session: Session,
    message: OutboundMessage,
    *,
    kind: str,
    channel: str,
    case_id: int | None = None,
    notice_id: int | None = None,
) -> OutboxItem | None:
    """Add ``message`` unless its key was ever enqueued; None means "already there".

    The key doubles as the dedupe key of reminders (``case:42:summons-overdue``), so
    a reminder fires once however often the tick asks.
    """
    if session.scalar(select(OutboxItem.id).where(OutboxItem.key == message.key)) is not None:
        return None
    now = gw.clock.now()
    item = OutboxItem(
        key=message.key,
        kind=kind,
        channel=channel,
        case_id=case_id,
        notice_id=notice_id,
        payload=encode_message(message),
        status="pending",
        attempts=0,
        created_at=now,
        next_attempt_at=now,
        give_up_at=now + timedelta(hours=gw.settings.gateway.retry_for_hours),
    )
    try:
        with session.begin_nested():  # two instances ticking at once: the loser no-ops
            session.add(item)
    except IntegrityError:
        return None
    return item


def cancel_for_notice(session: Session, notice_id: int, reason: str) -> int:
    """Cancel pending outbox rows of a notice; returns how many were cancelled."""
    result = session.execute(
        update(OutboxItem)
        .where(OutboxItem.notice_id == notice_id, OutboxItem.status == "pending")
        .values(status="cancelled", last_error=reason[:500])
    )
    return int(getattr(result, "rowcount", 0) or 0)


@dataclass
class DispatchStats:
    sent: int = 0
    retried: int = 0
    dead: int = 0
    cancelled: int = 0

    @property
    def total(self) -> int:
        return self.sent + self.retried + self.dead + self.cancelled


def _claim_one(gw: Gateway, session: Session, now: datetime) -> OutboxItem | None:
    query = (
        select(OutboxItem)
        .where(
            OutboxItem.status == "pending",
            OutboxItem.next_attempt_at <= now,
            or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until < now),
        )
        .order_by(OutboxItem.next_attempt_at, OutboxItem.id)
        .limit(1)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    item = session.scalar(query)
    if item is None:
        return None
    claimed = session.execute(
        update(OutboxItem)
        .where(
            OutboxItem.id == item.id,
            OutboxItem.status == "pending",
            or_(OutboxItem.lease_until.is_(None), OutboxItem.lease_until < now),
        )
        .values(
            lease_owner=gw.instance_id,
            lease_until=now + timedelta(seconds=gw.settings.gateway.lease_seconds),
            attempts=OutboxItem.attempts + 1,
        )
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        return None
    session.refresh(item)
    return item


def dispatch_due(gw: Gateway, *, limit: int = 100, rng: random.Random | None = None) -> DispatchStats:
    """Send what is due, one row at a time, until nothing is due or ``limit`` is hit."""
    stats = DispatchStats()
    for _ in range(limit):
        now = gw.clock.now()
        with gw.session() as session:
            item = _claim_one(gw, session, now)
            if item is None:
                break
            if item.payload is None or not gw.handlers.for_delivery(item.kind).may_send(gw, session, item):
                item.status = "cancelled"
                item.lease_until = None
                fields = _fields(session, item, "cancelled")
                line = "outbox %s (%s) cancelled: no longer to be sent"
                log_after_commit(session, log, logging.INFO, line, item.id, item.kind, extra=fields)
                stats.cancelled += 1
                continue
            item_id, channel_name, payload = item.id, item.channel, item.payload
        assert payload is not None
        message = decode_message(payload)
        started = time.perf_counter()
        try:
            receipt = gw.outbound_channel(channel_name).send(message)
        except TransientError as exc:
            _record_transient(gw, item_id, exc, rng, _ms(started))
            stats.retried += 1
            continue
        except ChannelError as exc:
            _record_dead(gw, item_id, error_text(exc), _ms(started))
            stats.dead += 1
            continue
        except Exception as exc:  # a connector bug must not wedge the loop
            log.exception("outbox %s: channel %s raised unexpectedly", item_id, channel_name)
            _record_dead(gw, item_id, f"unexpected {type(exc).__name__}", _ms(started))
            stats.dead += 1
            continue
        _record_sent(gw, item_id, receipt, _ms(started))
        stats.sent += 1
    return stats


def _ms(started: float) -> int:
    return round((time.perf_counter() - started) * 1000)


def _fields(session: Session, item: OutboxItem, outcome: str, ms: int | None = None) -> dict[str, object]:
    """The ``extra`` fields of an attempt's line (see the module docstring)."""
    fields: dict[str, object] = {
        "channel": item.channel,
        "outbox_id": item.id,
        "attempt": item.attempts,
        "outcome": outcome,
    }
    if ms is not None:
        fields["duration_ms"] = ms
    if item.case_id is not None:
        number = session.scalar(select(Case.number).where(Case.id == item.case_id))
        if number:
            fields["case"] = number
    return fields


def error_text(exc: BaseException) -> str:
    """What ``last_error`` may hold: the error's class and its message, masked.

    Connectors word their errors without personal data, but a vendor's message can
    quote an address or a number; the mask makes sure none is stored or printed.
    """
    return f"{type(exc).__name__}: {redact(str(exc))}"[:500]


def _record_sent(gw: Gateway, item_id: int, receipt: Receipt, ms: int) -> None:
    with gw.session() as session:
        item = session.get_one(OutboxItem, item_id)
        item.status = "sent"
        item.sent_at = receipt.delivered_at
        item.receipt = f"{receipt.channel}:{receipt.reference}"[:500]
        item.lease_until = None
        log.info(
            "outbox %s (%s) delivered via %s%s, attempt %d, %d ms",
            item.id,
            item.kind,
            receipt.channel,
            " (already delivered earlier)" if receipt.duplicate else "",
            item.attempts,
            ms,
            extra=_fields(session, item, "sent", ms),
        )
        gw.handlers.for_delivery(item.kind).delivered(gw, session, item, receipt)


def _record_transient(
    gw: Gateway, item_id: int, exc: TransientError, rng: random.Random | None, ms: int
) -> None:
    now = gw.clock.now()
    with gw.session() as session:
        item = session.get_one(OutboxItem, item_id)
        if now >= item.give_up_at:
            _make_dead(gw, session, item, f"gave up after {item.attempts} attempts: {exc}", ms)
            return
        delay = backoff(
            item.attempts,
            base=gw.settings.gateway.backoff_base_seconds,
            cap=gw.settings.gateway.backoff_cap_seconds,
            retry_after=exc.retry_after,
            rng=rng,
        )
        item.next_attempt_at = min(now + timedelta(seconds=delay), item.give_up_at)
        item.lease_until = None
        item.last_error = error_text(exc)
        log.warning(
            "outbox %s (%s): transient failure, attempt %d, retry in %.0f s: %s",
            item.id,
            item.kind,
            item.attempts,
            delay,
            exc,
            extra=_fields(session, item, "retried", ms),
        )


def _record_dead(gw: Gateway, item_id: int, reason: str, ms: int) -> None:
    with gw.session() as session:
        _make_dead(gw, session, session.get_one(OutboxItem, item_id), reason, ms)


def _make_dead(gw: Gateway, session: Session, item: OutboxItem, reason: str, ms: int) -> None:
    item.status = "dead"
    item.lease_until = None
    item.last_error = redact(reason)[:500]
    log.error(
        "outbox %s (%s) is a dead letter: %s",
        item.id,
        item.kind,
        reason,
        extra=_fields(session, item, "dead", ms),
    )
    gw.handlers.for_delivery(item.kind).failed(gw, session, item, reason)
