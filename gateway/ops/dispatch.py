"""Dispatching the outbox from the daemon: one claim at a time, one line per attempt.

``outbox.dispatch_due`` sends up to ``limit`` rows and reports counts. The daemon
calls it with ``limit=1`` in a loop, so it can stop between two sends (SIGTERM) and
count and log each attempt: ``dispatch outbox 42 (notice) via spool: sent, attempt
1, 12 ms``, with ``channel``, ``outbox_id``, ``attempt``, ``duration_ms`` and
``outcome`` as JSON fields. The counts do not say which row was sent, so the
daemon's Gateway (``DaemonGateway``) hands the outbox a channel whose ``send``
records its key, and the row is looked up by that (unique) key afterwards.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select

from gateway.config import Settings
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.models import OutboxItem
from gateway.ops.metrics import Metrics
from gateway.ports import ChannelError, OutboundChannel, OutboundMessage, Receipt, TransientError

__all__ = ["DISPATCH_BATCH", "DISPATCH_RESULTS", "DaemonGateway", "SendRecord", "dispatch"]

log = logging.getLogger(__name__)

DISPATCH_BATCH = 100  # outbox rows one tick sends at most, one claim at a time
DISPATCH_RESULTS = ("sent", "retried", "dead", "cancelled")  # the fields of outbox.DispatchStats


@dataclass(frozen=True)
class SendRecord:
    channel: str
    key: str
    result: str  # sent, duplicate, transient, permanent, crashed
    seconds: float


class _TimedSend:
    """An outbound channel whose ``send`` is timed and remembered on the gateway."""

    def __init__(self, inner: OutboundChannel, gw: DaemonGateway) -> None:
        self._inner, self._gw = inner, gw
        self.name = inner.name

    def send(self, message: OutboundMessage) -> Receipt:
        started = time.perf_counter()
        result = "crashed"
        try:
            receipt = self._inner.send(message)
            result = "duplicate" if receipt.duplicate else "sent"
            return receipt
        except TransientError:
            result = "transient"
            raise
        except ChannelError:
            result = "permanent"
            raise
        finally:
            self._gw.last_send = SendRecord(self.name, message.key, result, time.perf_counter() - started)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@dataclass
class DaemonGateway(Gateway):
    """The daemon's Gateway: the same context, with each outbound send timed.

    ``outbox.dispatch_due`` reports counts, not which row it sent; the daemon wants
    one log line per attempt naming the row, its channel and how long the send took,
    so the channel handed to the outbox records its last send here. Built from the
    Gateway the CLI opened (``around``), and again on every reload (new settings,
    fresh channels, the same engine, key, handlers and instance id).
    """

    last_send: SendRecord | None = None

    @classmethod
    def around(cls, gw: Gateway, settings: Settings | None = None) -> DaemonGateway:
        shared = {
            f.name: getattr(gw, f.name)
            for f in dataclasses.fields(Gateway)
            if f.init and not f.name.startswith("_")
        }
        if settings is not None:
            shared["settings"] = settings
        return cls(**shared)

    def outbound_channel(self, name: str) -> OutboundChannel:
        return _TimedSend(super().outbound_channel(name), self)

    def build_channels(self) -> None:
        """Build every configured channel now; ``ConfigError``/``ChannelError`` if one fails."""
        for entry in self.settings.channels:
            self.channel(entry.name)

    def close_channels(self) -> None:
        """Close the channels this context built, leaving the shared engine open."""
        for channel in list(self._channels.values()):
            closer = getattr(channel, "close", None)
            if callable(closer):
                try:
                    closer()
                except Exception:
                    log.exception("closing a channel failed")
        self._channels.clear()


def dispatch(gw: DaemonGateway, stop: threading.Event, metrics: Metrics) -> outbox.DispatchStats:
    """Send what is due, one claim at a time, checking ``stop`` between sends."""
    total = outbox.DispatchStats()
    for _ in range(DISPATCH_BATCH):
        if stop.is_set():
            break
        gw.last_send = None
        started = time.perf_counter()
        stats = outbox.dispatch_due(gw, limit=1)
        if not stats.total:
            break
        seconds = time.perf_counter() - started
        result = next(name for name in DISPATCH_RESULTS if getattr(stats, name))
        for name in DISPATCH_RESULTS:
            setattr(total, name, getattr(total, name) + getattr(stats, name))
        metrics.dispatched(result)
        _log_attempt(gw, result, seconds)
    return total


def _log_attempt(gw: DaemonGateway, result: str, seconds: float) -> None:
    sent = gw.last_send
    ms = round(seconds * 1000)
    if sent is None:
        log.info(
            "dispatch: a claimed outbox row was cancelled (no longer to be sent), %d ms",
            ms,
            extra={"duration_ms": ms, "outcome": result},
        )
        return
    with gw.session() as session:
        row = session.execute(
            select(OutboxItem.id, OutboxItem.kind, OutboxItem.attempts).where(OutboxItem.key == sent.key)
        ).one_or_none()
    outbox_id, kind, attempt = row if row is not None else (None, "?", 0)
    log.info(
        "dispatch outbox %s (%s) via %s: %s, attempt %d, %d ms",
        outbox_id,
        kind,
        sent.channel,
        result,
        attempt,
        ms,
        extra={
            "channel": sent.channel,
            "outbox_id": outbox_id,
            "attempt": attempt,
            "duration_ms": ms,
            "outcome": result,
        },
    )
