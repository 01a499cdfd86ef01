"""Taking in one order document: a new case, an amendment, a withdrawal, or parked.

An ``endring`` or ``tilbakekall`` may arrive before the order it names (channels do
not keep order): it is stored and parked, and applied the moment that order comes.
Of two amendments, the one sent later wins, whatever order they arrive in.
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from gateway import cases
from gateway.config import Unit as UnitSettings
from gateway.context import Gateway
from gateway.domain.lifecycle import ENDED, Status, TransitionError
from gateway.intake.quarantine import Quarantine
from gateway.messages.orders import Order, OrderError, parse_order
from gateway.messages.results import IntakeResult
from gateway.models import Case, InboundMessage, OrderRecord

log = logging.getLogger(__name__)


def take_order(
    gw: Gateway,
    session: Session,
    data: bytes,
    inbound: InboundMessage,
    *,
    only_units: list[UnitSettings] | None = None,
) -> IntakeResult:
    """One order document; ``only_units`` limits it to those units (a staff forward)."""
    try:
        order = parse_order(data, max_bytes=gw.settings.gateway.max_order_bytes)
    except OrderError as exc:
        raise Quarantine(f"invalid order: {exc}") from exc
    if session.scalar(select(OrderRecord.id).where(OrderRecord.order_id == order.order_id)) is not None:
        return IntakeResult("duplicate_order", reason=f"OrdreId {order.order_id} already received")
    if order.message_type == "ny":
        return _new_order(gw, session, order, inbound, only_units)
    record = _record(session, order, inbound)
    target = session.scalar(select(Case).where(Case.order_id == order.refers_to))
    if only_units is not None and (target is None or not _serves(only_units, target.unit.code)):
        raise Quarantine(
            f"{order.message_type} forwarded by staff for a case that is not one of their unit's cases"
        )
    if target is None:
        log.info("intake: %s %s names an order not seen yet; parked", order.message_type, order.order_id)
        return IntakeResult("parked", reason=f"waits for order {order.refers_to}")
    return _apply_amendment(gw, session, target, order, record)


def _serves(units: list[UnitSettings], code: str) -> bool:
    return any(unit.code == code for unit in units)


def _record(
    session: Session,
    order: Order,
    inbound: InboundMessage,
    case: Case | None = None,
    applied_at: datetime | None = None,
) -> OrderRecord:
    """The order's record: its OrdreId is unique, so a second instance taking the same
    order at the same moment fails here, and its savepoint takes the whole message back."""
    record = OrderRecord(
        order_id=order.order_id,
        message_type=order.message_type,
        refers_to=order.refers_to,
        sent_at=order.sent,
        inbound_id=inbound.id,
        payload=order.to_json(),
        case_id=case.id if case else None,
        applied_at=applied_at,
    )
    session.add(record)
    session.flush()
    return record


def _new_order(
    gw: Gateway,
    session: Session,
    order: Order,
    inbound: InboundMessage,
    only_units: list[UnitSettings] | None,
) -> IntakeResult:
    unit = gw.settings.unit_for(order.recipient_org_number, order.recipient_kommunenummer)
    if unit is None:
        raise Quarantine("no configured unit serves the order's recipient (org number / kommunenummer)")
    if only_units is not None and not _serves(only_units, unit.code):
        raise Quarantine("order forwarded by staff of another unit than the one it is addressed to")
    case = cases.open_case_from_order(gw, session, order, unit)
    # written once, with its case: no UPDATE of a row just inserted
    inbound.case_id = case.id
    _record(session, order, inbound, case, gw.clock.now())
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
