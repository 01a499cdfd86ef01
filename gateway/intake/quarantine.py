"""Quarantine: where intake puts what it cannot use, with the reason and an alert.

Nothing is dropped: the original stays stored (encrypted) with the entry, and an
operator can export it or run it through intake again once the cause is fixed.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.effects import Quarantined
from gateway.messages.results import IntakeResult
from gateway.models import InboundMessage, QuarantineEntry


class Quarantine(Exception):
    """Raised while judging a message: it goes to quarantine for ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def quarantine(gw: Gateway, session: Session, inbound: InboundMessage, reason: str) -> IntakeResult:
    entry = QuarantineEntry(
        inbound_id=inbound.id,
        channel=inbound.channel,
        reason=reason[:500],
        received_at=inbound.received_at,
    )
    session.add(entry)
    session.flush()
    gw.emit(session, Quarantined(entry.id, inbound.channel, reason))
    return IntakeResult("quarantined", reason=reason)
