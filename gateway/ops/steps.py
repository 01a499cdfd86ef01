"""The daemon's steps: poll a channel, tick the reminders, and one full cycle.

Each step is made of short transactions and leaves one log line without personal
data (``poll <channel>: …``, ``tick: done …``), with ``extra`` fields the JSON log
keeps as keys. ``poll_channel`` takes a ``stop`` event: once set, the poll ends
before the next message, so the one in hand is committed and acknowledged and the
rest stay at their source. ``cycle`` is one round for ``russak run --once`` and the
demo; the daemon runs the same steps on its scheduler (``gateway.ops.daemon``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.intake import batch
from gateway.intake import pipeline as intake
from gateway.models import Cursor
from gateway.ops.leases import lease_ttl, try_lease
from gateway.ops.metrics import Metrics
from gateway.ports import ChannelError, InboundChannel, RawMessage
from gateway.staff import reminders

__all__ = ["CycleReport", "DbCursorStore", "PollResult", "cycle", "poll_channel", "tick"]

log = logging.getLogger(__name__)


class DbCursorStore:
    """CursorStore on the cursors table; each ``set`` commits on its own.

    A channel moves a cursor only past messages it was asked to acknowledge, that is
    after their commit (see ``gateway.ports.CursorStore``), so a crash never moves a
    cursor past unprocessed mail.
    """

    def __init__(self, gw: Gateway, channel: str) -> None:
        self._gw, self._channel = gw, channel

    def get(self, key: str) -> str | None:
        with self._gw.session() as session:
            row = session.get(Cursor, (self._channel, key))
            return row.value if row else None

    def set(self, key: str, value: str) -> None:
        with self._gw.session() as session:
            row = session.get(Cursor, (self._channel, key))
            if row is None:
                session.add(
                    Cursor(channel=self._channel, key=key, value=value, updated_at=self._gw.clock.now())
                )
            else:
                row.value, row.updated_at = value, self._gw.clock.now()


# How long the daemon's poll of one channel runs before it hands the worker back (to the
# outbox, the tick, a reload) and queues its next step. Far below the systemd watchdog
# (WatchdogSec=120) and the lease time (5 minutes or more), both renewed per batch too.
POLL_STEP_SECONDS = 30.0


@dataclass
class CycleReport:
    taken: dict[str, int] = field(default_factory=dict)
    outcomes: list[str] = field(default_factory=list)
    dispatched: outbox.DispatchStats = field(default_factory=outbox.DispatchStats)
    reminders: int = 0


@dataclass(frozen=True)
class PollResult:
    """What one poll of one channel did. ``result``: ok, stopped (by a signal, after a
    committed message), failed (channel error), crashed (a bug), storage (the database
    cannot be written), busy (another instance holds the channel's poll lease)."""

    channel: str
    result: str
    taken: int = 0
    errors: int = 0
    seconds: float = 0.0
    outcomes: dict[str, int] = field(default_factory=dict)
    more: bool = False  # the step's time ran out with messages still at the source


def poll_channel(
    gw: Gateway,
    channel: InboundChannel,
    report: CycleReport,
    *,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
    budget_seconds: float | None = None,
    heartbeat: Callable[[], None] | None = None,
) -> PollResult:
    """Take in everything a channel has, in batches; acknowledge items only after their commit.

    With ``budget_seconds`` the poll is one step of a longer one: once that much time
    has gone, it ends after the batch in hand (committed and acknowledged) and says
    ``more``; the rest wait at the source for the next step. The daemon has one worker,
    so an unbounded poll of a large inbox would hold back the outbox (a notice to the
    police), the tick and a reload for as long as the inbox lasts. ``heartbeat`` runs
    after every batch (the daemon renews its lease and the systemd watchdog there).

    A backlog is taken in batches (``gateway.intake.batch``: one transaction, a
    savepoint per message) so it does not wait on two fsyncs per message. With
    several instances (PostgreSQL) a per-channel lease makes sure only one of them
    polls a source at a time; intake's dedupe would cope, but the source would be
    read twice for nothing. ``stop``, once set, ends the poll before the next
    message: what was judged is committed and acknowledged, the rest stay at the
    source. Logs one line per poll: ``poll <channel>: <result>, N taken in …``.
    """
    started = time.perf_counter()
    if not try_lease(gw, f"poll:{channel.name}", lease_ttl(gw)):
        log.debug("channel %s: polled by another instance", channel.name)
        if metrics is not None:
            metrics.polled(channel.name, "busy", time.perf_counter() - started, gw.clock.now().timestamp())
        return PollResult(channel.name, "busy")
    taken = errors = 0
    outcomes: Counter[str] = Counter()
    result = "ok"
    more = False
    try:
        messages = channel.poll(DbCursorStore(gw, channel.name))
        try:
            batches = _Batches(messages, stop)
            for chunk in batches:
                judged_all = batch.process_batch(gw, chunk, stop=stop)
                for message, judged in zip(chunk, judged_all, strict=True):
                    if judged is None:
                        batches.carry(message)  # not reached in time: the next batch takes it
                        continue
                    report.outcomes.append(judged.outcome)
                    outcomes[judged.outcome] += 1
                    if metrics is not None:
                        metrics.taken(channel.name, judged.outcome)
                    if judged.outcome == "error":
                        errors += 1
                        if intake.is_storage_trouble(judged):
                            result = "storage"
                        continue  # not stored: leave it at the source for the next poll
                    taken += 1
                    _acknowledge(channel, message)
                if result != "ok" or (stop is not None and stop.is_set()):
                    break  # storage: the rest would fail the same way; stop: as asked
                if heartbeat is not None:
                    heartbeat()
                if budget_seconds is not None and time.perf_counter() - started >= budget_seconds:
                    more = True  # the step's time is up: the rest stay at the source
                    break
        finally:
            _close(messages)
        if result == "ok" and stop is not None and stop.is_set():
            result = "stopped"
    except ChannelError as exc:
        result = "failed"
        log.warning("channel %s: poll failed: %s", channel.name, exc)
    except Exception:
        result = "crashed"
        log.exception("channel %s: poll crashed; will try again next cycle", channel.name)
    report.taken[channel.name] = taken
    seconds = time.perf_counter() - started
    if metrics is not None:
        metrics.polled(channel.name, result, seconds, gw.clock.now().timestamp())
    judged_text = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
    log.info(
        "poll %s: %s, %d taken in%s, %d ms%s",
        channel.name,
        result,
        taken,
        f" ({judged_text})" if judged_text else "",
        seconds * 1000,
        "; more waiting, the next step follows the outbox" if more else "",
        extra={"channel": channel.name, "duration_ms": round(seconds * 1000), "outcome": result},
    )
    return PollResult(channel.name, result, taken, errors, seconds, dict(outcomes), more)


class _Batches:
    """The channel's messages in batches for ``batch.process_batch``, bounded by count and size.

    Reading ahead is bounded too: a channel reads a message's content when it is asked
    for it, so about one batch of content (``batch.MAX_BYTES`` plus one message) is in
    memory at a time. Messages a batch did not reach in its time are ``carry``-ed into
    the next one.
    """

    def __init__(self, messages: Iterator[RawMessage], stop: threading.Event | None) -> None:
        self._source, self._stop = messages, stop
        self._carried: list[RawMessage] = []

    def carry(self, message: RawMessage) -> None:
        self._carried.append(message)

    def __iter__(self) -> Iterator[list[RawMessage]]:
        while not (self._stop is not None and self._stop.is_set()):
            chunk, self._carried = self._carried, []
            size = sum(len(m.content) for m in chunk)
            if len(chunk) < batch.MAX_MESSAGES and size < batch.MAX_BYTES:
                for message in self._source:
                    chunk.append(message)
                    size += len(message.content)
                    if len(chunk) >= batch.MAX_MESSAGES or size >= batch.MAX_BYTES:
                        break
            if not chunk or (self._stop is not None and self._stop.is_set()):
                return
            yield chunk


def _acknowledge(channel: InboundChannel, message: RawMessage) -> None:
    """Remove a committed message at its source; a failure only means it is seen again."""
    try:
        channel.acknowledge(message)
    except ChannelError as exc:
        log.warning(
            "channel %s: acknowledge failed (will be seen again, then deduped): %s", channel.name, exc
        )


def _close(messages: Iterator[Any]) -> None:
    """End a channel's generator now (its ``finally`` runs), not whenever it is collected."""
    close = getattr(messages, "close", None)
    if callable(close):
        close()


def tick(gw: Gateway) -> reminders.TickReport:
    """Reminders, auto notices and digests, with one line: ``tick: done in N ms (…)``."""
    started = time.perf_counter()
    report = reminders.tick(gw)
    ms = (time.perf_counter() - started) * 1000
    log.info(
        "tick: done in %d ms (%d reminder(s), %d auto notice(s), %d digest(s))",
        ms,
        report.reminders,
        len(report.auto_notices),
        report.digests,
        extra={"duration_ms": round(ms)},
    )
    return report


def cycle(gw: Gateway) -> CycleReport:
    """One full round: poll every channel, tick, dispatch. Used by --once and the demo."""
    report = CycleReport()
    for channel in gw.inbound_channels():
        poll_channel(gw, channel, report)
    report.reminders = tick(gw).reminders
    report.dispatched = outbox.dispatch_due(gw)
    return report
