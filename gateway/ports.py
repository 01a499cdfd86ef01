"""The contracts between the gateway core and the outside world.

Every connector (spool folder, Altinn, Graph, EWS, IMAP, SMTP) implements one of the
two channel protocols below and raises only the two error kinds defined here. The
core never imports a connector by name; ``gateway.registry`` turns a configuration
entry into an instance. Keeping all contracts in this one file means a reviewer can
see the whole seam at once, and a new connector author knows exactly what to build.

Error tree (nothing else may cross the seam)::

    ChannelError
    ├── TransientError(retry_after=seconds | None)   try again later
    └── PermanentError                               dead-letter and alert staff
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol, runtime_checkable

__all__ = [
    "Attachment",
    "ChannelError",
    "Clock",
    "CursorStore",
    "InboundChannel",
    "OutboundChannel",
    "OutboundMessage",
    "PermanentError",
    "RawMessage",
    "Receipt",
    "TransientError",
]


class ChannelError(Exception):
    """Base of the only errors a connector may raise towards the core."""


class TransientError(ChannelError):
    """The operation may succeed later (network blip, throttling, 5xx).

    ``retry_after`` carries the server's hint in seconds (``Retry-After``), which the
    outbox schedule honours instead of its own backoff when it is longer.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class PermanentError(ChannelError):
    """The operation will not succeed by retrying (rejected, unauthorised, invalid)."""


@runtime_checkable
class Clock(Protocol):
    """The only source of "now" in the core, so tests and the demo can move time."""

    def now(self) -> datetime:
        """Return the current time as an aware datetime in UTC."""
        ...


@dataclass(frozen=True)
class RawMessage:
    """One inbound item exactly as a channel delivered it.

    ``external_id`` must be stable across re-deliveries of the same item (an Altinn
    correspondence id, a Graph immutable id, IMAP UIDVALIDITY+UID, a file's content
    hash), because intake deduplicates on ``(channel, external_id)``.
    ``kind`` tells intake how to read ``content``: a bare XML document or an RFC 5322
    mail (attachments and all).
    """

    channel: str
    external_id: str
    content: bytes
    kind: Literal["xml", "email"]
    received_at: datetime
    sender: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


class CursorStore(Protocol):
    """Durable per-channel position (watermark, delta link, UIDVALIDITY/UID).

    ``set`` commits at once. The core reads ahead: it asks for up to one batch of
    items (``gateway.intake.batch``) before it commits them, so a channel moves a
    cursor only past items it has been asked to ``acknowledge`` (which happens after
    their commit), never past items it merely yielded. Then a crash never moves a
    cursor past unprocessed mail.
    """

    def get(self, key: str) -> str | None: ...

    def set(self, key: str, value: str) -> None: ...


@runtime_checkable
class InboundChannel(Protocol):
    """A source of police orders and staff mail.

    ``poll`` yields new items; the core commits them (in batches) and only then calls
    ``acknowledge`` for each (delete, move or mark at the source), in the order they
    were yielded. An item that is yielded
    again after a crash is recognised by its ``external_id`` and recorded as a
    duplicate, so a channel may err on the side of delivering twice.
    """

    name: str

    def poll(self, cursor: CursorStore) -> Iterator[RawMessage]: ...

    def acknowledge(self, message: RawMessage) -> None: ...


@dataclass(frozen=True)
class Attachment:
    filename: str
    content_type: str
    data: bytes


@dataclass(frozen=True)
class OutboundMessage:
    """A message leaving the gateway, shaped so every channel can carry it.

    ``key`` is the idempotency key fixed when the message was enqueued: Altinn gets
    it as ``idempotentKey``, e-mail as a stable ``Message-ID``, the spool folder as
    the file name. A channel that sees a key it already delivered must answer with
    the earlier receipt instead of delivering again.
    ``kind`` is ``notice`` for a notice of non-compliance to the prosecuting
    authority (XML attachment plus a short Norwegian text) and ``mail`` for staff
    alerts, digests and command replies. Every mail the gateway sends is machine
    written: ``headers`` carries ``Auto-Submitted`` (``auto-generated``, or
    ``auto-replied`` on a command reply, RFC 3834), and a mail channel adds
    ``X-Auto-Response-Suppress: All`` itself so Exchange sends no out-of-office
    replies back.
    """

    key: str
    kind: Literal["notice", "mail"]
    recipients: tuple[str, ...]
    subject: str
    body: str
    attachments: tuple[Attachment, ...] = ()
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Receipt:
    """Proof of hand-over: the channel's own reference for what it accepted."""

    channel: str
    reference: str
    delivered_at: datetime
    duplicate: bool = False


@runtime_checkable
class OutboundChannel(Protocol):
    """Somewhere the outbox can hand a message to: ``send(message) -> receipt``."""

    name: str

    def send(self, message: OutboundMessage) -> Receipt: ...
