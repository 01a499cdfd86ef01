"""The daemon: poll every inbound channel, tick the reminders, dispatch the outbox.

APScheduler is only the clock that drives these steps (interval and cron triggers in
Europe/Oslo, one worker thread so steps never overlap, ``coalesce`` so a stalled
process does not replay missed runs); it holds no business state, which lives in
the database. Signals only set a flag and wake the main thread:

- **SIGTERM / SIGINT**: stop. The step in hand finishes its unit of work (the message
  being taken in is committed and acknowledged, the outbox row being sent is
  recorded) and then returns instead of taking the next one, so the process exits
  within seconds: files not yet taken stay in the inbox, rows not yet claimed stay
  pending. Exit code 0.
- **SIGHUP**: read the configuration file again (``gateway.ops.reload``). The reload
  runs as a job in the same single worker, so it happens between two steps, never
  inside one. A file that does not validate, or whose channels cannot be built, is
  refused with one error line and the running configuration is kept.

After every poll and tick the daemon logs one line (``poll <channel>: …``, ``tick:
done …``, and ``dispatch outbox N …`` per send attempt, with ``extra`` fields for the
JSON log), and, under systemd, sends a one-line ``STATUS=`` built from the facts of
``russak status`` (``gateway.ops.status``). With ``gateway.health_listen`` it serves
``/healthz`` and ``/metrics`` (``gateway.ops.health``, ``gateway.ops.metrics``).

SQLite mode is single-instance by design: a lease row names the running process,
and a second one refuses to start while that process is alive.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from gateway.cases import retention
from gateway.clock import OSLO
from gateway.config import ConfigError, GatewaySettings, Settings, listen_address
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.intake import pipeline as intake
from gateway.models import Cursor, Lease, OutboxItem
from gateway.ops import sdnotify
from gateway.ops import status as health_facts
from gateway.ports import (
    ChannelError,
    InboundChannel,
    OutboundChannel,
    OutboundMessage,
    Receipt,
    TransientError,
)
from gateway.staff import reminders

if TYPE_CHECKING:
    from gateway.ops.health import HealthServer
    from gateway.ops.metrics import Metrics

log = logging.getLogger(__name__)

INSTANCE_LEASE = health_facts.INSTANCE_LEASE
LEASE_TTL = health_facts.MIN_LEASE_TTL
DISPATCH_BATCH = 100  # outbox rows one tick sends at most, one claim at a time
DISPATCH_RESULTS = ("sent", "retried", "dead", "cancelled")  # the fields of outbox.DispatchStats


class AlreadyRunning(RuntimeError):
    pass


class DbCursorStore:
    """CursorStore on the cursors table; each ``set`` commits on its own.

    A channel calls ``set`` only after the consumer has taken (and committed) every
    message it yielded before, so a crash never moves a cursor past unprocessed mail.
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


def try_lease(gw: Gateway, name: str, ttl: timedelta) -> bool:
    """Take or renew a named lease; False while another live owner holds it."""
    now = gw.clock.now()
    try:
        with gw.session() as session:
            lease = session.get(Lease, name, with_for_update=True)
            if (
                lease is not None
                and lease.owner != gw.instance_id
                and lease.until > now
                and health_facts.owner_alive(lease.owner)
            ):
                return False
            if lease is None:
                session.add(Lease(name=name, owner=gw.instance_id, until=now + ttl))
            else:
                lease.owner, lease.until = gw.instance_id, now + ttl
    except IntegrityError:
        return False  # another instance created it a moment ago
    return True


def poll_channel(
    gw: Gateway,
    channel: InboundChannel,
    report: CycleReport,
    *,
    stop: threading.Event | None = None,
    metrics: Metrics | None = None,
) -> PollResult:
    """Take in everything a channel has; acknowledge each item only after its commit.

    With several instances (PostgreSQL) a per-channel lease makes sure only one of
    them polls a source at a time; intake's dedupe would cope, but the source would
    be read twice for nothing. ``stop``, once set, ends the poll before the next
    message: the one in hand is committed and acknowledged, the rest stay at the
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
    try:
        messages = channel.poll(DbCursorStore(gw, channel.name))
        try:
            for message in messages:
                if stop is not None and stop.is_set():
                    result = "stopped"
                    break
                judged = intake.process(gw, message)
                report.outcomes.append(judged.outcome)
                outcomes[judged.outcome] += 1
                if metrics is not None:
                    metrics.taken(channel.name, judged.outcome)
                if judged.outcome == "error":
                    errors += 1
                    if intake.is_storage_trouble(judged):
                        result = "storage"
                        break  # the rest would fail the same way; try again next poll
                    continue  # not stored: leave it at the source for the next poll
                taken += 1
                try:
                    channel.acknowledge(message)
                except ChannelError as exc:
                    log.warning(
                        "channel %s: acknowledge failed (will be seen again, then deduped): %s",
                        channel.name,
                        exc,
                    )
        finally:
            _close(messages)
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
        "poll %s: %s, %d taken in%s, %d ms",
        channel.name,
        result,
        taken,
        f" ({judged_text})" if judged_text else "",
        seconds * 1000,
        extra={"channel": channel.name, "duration_ms": round(seconds * 1000), "outcome": result},
    )
    return PollResult(channel.name, result, taken, errors, seconds, dict(outcomes))


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


# Single instance ------------------------------------------------------------------


def lease_ttl(gw: Gateway) -> timedelta:
    """Long enough to survive a slow step, renewed on every poll and tick."""
    return health_facts.lease_ttl(gw.settings.gateway)


def acquire_instance_lease(gw: Gateway) -> None:
    now = gw.clock.now()
    with gw.session() as session:
        lease = session.get(Lease, INSTANCE_LEASE)
        if (
            lease is not None
            and lease.owner != gw.instance_id
            and lease.until > now
            and health_facts.owner_alive(lease.owner)
        ):
            if gw.engine.dialect.name == "sqlite":
                raise AlreadyRunning(
                    f"another gateway ({lease.owner}) is running on this SQLite database; "
                    "SQLite mode is single-instance (use PostgreSQL for several instances)"
                )
            return
        if lease is None:
            session.add(Lease(name=INSTANCE_LEASE, owner=gw.instance_id, until=now + lease_ttl(gw)))
        else:
            lease.owner, lease.until = gw.instance_id, now + lease_ttl(gw)


def release_instance_lease(gw: Gateway) -> None:
    with gw.session() as session:
        lease = session.get(Lease, INSTANCE_LEASE)
        if lease is not None and lease.owner == gw.instance_id:
            session.delete(lease)


# Timing each send, so a dispatch attempt's line can name its row --------------------


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


# The long-running process -------------------------------------------------------------


class Daemon:
    """``russak run``: the scheduler, the signals, the health endpoint.

    ``log_level`` is the command line's ``--log-level``, if given: it stays in force
    over the file's ``gateway.log_level`` across reloads.
    """

    def __init__(self, gw: Gateway, *, log_level: str | None = None) -> None:
        from gateway.ops.metrics import Metrics

        self.gw = DaemonGateway.around(gw)
        self.stop = threading.Event()
        self.reloaded = threading.Event()  # set after each reload attempt (tests wait on it)
        self.metrics = Metrics()
        self.health_server: HealthServer | None = None
        self._log_level = log_level
        self._wake = threading.Event()
        self._reload_asked = False
        self._scheduler: Any = None
        for entry in self.gw.settings.channels:
            if entry.inbound:
                self.metrics.channel_seen(entry.name)

    # -- what signals (or a test) ask for ------------------------------------------

    def request_stop(self) -> None:
        self.stop.set()
        self._wake.set()

    def request_reload(self) -> None:
        self._reload_asked = True
        self._wake.set()

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGHUP:
            log.info("signal %s received; reloading the configuration between steps", name)
            self.request_reload()
        else:
            log.info("signal %s received; stopping after the current step", name)
            self.request_stop()

    # -- the steps (each runs in the scheduler's one worker thread) ----------------

    def _guarded(self, name: str, step: Callable[[], object]) -> None:
        if self.stop.is_set():
            return  # queued before the stop: not started, so nothing to finish
        try:
            step()
        except Exception:
            log.exception("%s failed; the daemon carries on", name)

    def _poll(self) -> None:
        report = CycleReport()
        gw = self.gw
        for channel in gw.inbound_channels():
            if self.stop.is_set():
                return
            poll_channel(gw, channel, report, stop=self.stop, metrics=self.metrics)
        self._renew()
        self._report_status()

    def _tick(self) -> None:
        self._renew()
        tick(self.gw)
        if not self.stop.is_set():
            self._dispatch()
        self._report_status()

    def _dispatch(self) -> outbox.DispatchStats:
        """Send what is due, one claim at a time, checking for a stop between sends."""
        total = outbox.DispatchStats()
        for _ in range(DISPATCH_BATCH):
            if self.stop.is_set():
                break
            gw = self.gw
            gw.last_send = None
            started = time.perf_counter()
            stats = outbox.dispatch_due(gw, limit=1)
            if not stats.total:
                break
            seconds = time.perf_counter() - started
            result = next(name for name in DISPATCH_RESULTS if getattr(stats, name))
            for name in DISPATCH_RESULTS:
                setattr(total, name, getattr(total, name) + getattr(stats, name))
            self.metrics.dispatched(result)
            self._log_attempt(gw, result, seconds)
        return total

    def _log_attempt(self, gw: DaemonGateway, result: str, seconds: float) -> None:
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

    def _purge(self) -> None:
        retention.purge(self.gw)

    def _renew(self) -> None:
        gw = self.gw
        with gw.session() as session:
            lease = session.get(Lease, INSTANCE_LEASE)
            if lease is not None and lease.owner == gw.instance_id:
                lease.until = gw.clock.now() + lease_ttl(gw)
        sdnotify.watchdog()

    def health(self) -> health_facts.Health:
        """The facts of ``russak status``, now (any thread)."""
        return health_facts.gather(self.gw)

    def _report_status(self) -> None:
        if not sdnotify.enabled():
            return
        sdnotify.status(self.status_line())

    def status_line(self) -> str:
        from gateway.ops.health import status_line

        try:
            return status_line(self.health())
        except Exception as exc:
            log.debug("status: health facts could not be read", exc_info=True)
            return f"health facts cannot be read ({type(exc).__name__})"

    # -- SIGHUP ----------------------------------------------------------------------

    def _reload(self) -> None:
        from gateway.ops.reload import read_again

        old = self.gw
        new: DaemonGateway | None = None
        try:
            reread = read_again(old.settings)
            new = DaemonGateway.around(old, reread.settings)
            new.build_channels()
        except (ConfigError, ChannelError) as exc:
            if new is not None:
                new.close_channels()
            self.metrics.reloads.labels(result="refused").inc()
            reason = "; ".join(str(exc).splitlines()) or type(exc).__name__
            log.error("configuration reload refused; the running configuration is kept: %s", reason)
            sdnotify.ready(self.status_line())
            self.reloaded.set()
            return
        except Exception:
            if new is not None:
                new.close_channels()
            self.metrics.reloads.labels(result="refused").inc()
            sdnotify.ready(self.status_line())
            self.reloaded.set()
            raise
        self.gw = new
        old.close_channels()
        self._reschedule(old.settings.gateway, new.settings.gateway)
        if self._log_level is None and old.settings.gateway.log_level != new.settings.gateway.log_level:
            from gateway.privacy import configure_logging

            configure_logging(new.settings.gateway.log_level)
        for entry in new.settings.channels:
            if entry.inbound:
                self.metrics.channel_seen(entry.name)
        self.metrics.reloads.labels(result="applied").inc()
        for name in reread.needs_restart:
            log.warning("configuration reload: %s changed; it takes effect only after a restart", name)
        log.info("configuration reloaded from %s (%s)", new.settings.source, reread.describe())
        sdnotify.ready(self.status_line())
        self.reloaded.set()

    def _reschedule(self, old: GatewaySettings, new: GatewaySettings) -> None:
        scheduler = self._scheduler
        if scheduler is None:
            return
        if old.poll_interval_seconds != new.poll_interval_seconds:
            scheduler.reschedule_job("poll", trigger="interval", seconds=new.poll_interval_seconds)
        if old.tick_interval_seconds != new.tick_interval_seconds:
            scheduler.reschedule_job("tick", trigger="interval", seconds=new.tick_interval_seconds)
        if old.digest_time != new.digest_time:
            scheduler.reschedule_job(
                "digest", trigger="cron", hour=new.digest_time.hour, minute=new.digest_time.minute
            )

    # -- the process -----------------------------------------------------------------

    def _start_health_server(self) -> None:
        listen = self.gw.settings.gateway.health_listen
        if listen is None:
            return
        from gateway.ops.health import HealthServer

        address = listen_address(listen)
        try:
            server = HealthServer(address, self.health, self.metrics.registry)
        except OSError as exc:
            raise ConfigError(
                f"{self.gw.settings.source}: gateway.health_listen: cannot listen on {listen!r}: "
                f"{exc.strerror or exc}"
            ) from exc
        self.metrics.watch_health(self.health)
        server.start()
        self.health_server = server
        log.info("health endpoint on %s (/healthz, /metrics)", server.url)

    def _scheduler_with_jobs(self, start: datetime) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        settings = self.gw.settings.gateway
        scheduler = BackgroundScheduler(
            timezone=OSLO,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        scheduler.add_job(
            self._guarded,
            "interval",
            args=("poll", self._poll),
            id="poll",
            seconds=settings.poll_interval_seconds,
            next_run_time=start,
        )
        scheduler.add_job(
            self._guarded,
            "interval",
            args=("tick", self._tick),
            id="tick",
            seconds=settings.tick_interval_seconds,
            next_run_time=start,
        )
        scheduler.add_job(
            self._guarded,
            "cron",
            args=("digest", self._tick),
            id="digest",
            hour=settings.digest_time.hour,
            minute=settings.digest_time.minute,
        )
        scheduler.add_job(
            self._guarded,
            "cron",
            args=("purge", self._purge),
            id="purge",
            hour=3,
            minute=30,
            next_run_time=start + timedelta(seconds=30),
        )
        interval = sdnotify.watchdog_interval()
        if interval:
            scheduler.add_job(
                self._guarded,
                "interval",
                args=("watchdog", self._renew),
                id="watchdog",
                seconds=interval,
            )
        return scheduler

    def _install_signals(self) -> dict[int, Any]:
        """Our handlers for SIGTERM, SIGINT and SIGHUP; returns the ones they replaced."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # a test running the daemon in a thread uses request_stop/request_reload
        return {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
        }

    def run(self) -> None:
        """Run until ``request_stop`` (SIGTERM, SIGINT); raises ``AlreadyRunning``, ``ConfigError``."""
        try:
            self._start_health_server()
            acquire_instance_lease(self.gw)
        except BaseException:
            self._stop_health_server()
            self.gw.close_channels()
            raise
        previous = self._install_signals()
        scheduler = self._scheduler = self._scheduler_with_jobs(datetime.now(OSLO))
        try:
            scheduler.start()
            settings = self.gw.settings.gateway
            channels = ", ".join(c.name for c in self.gw.settings.channels)
            log.info(
                "russak-gateway running (instance %s; channels: %s; poll every %.0f s)",
                self.gw.instance_id,
                channels,
                settings.poll_interval_seconds,
            )
            sdnotify.ready(f"polling {channels}")
            while not self.stop.is_set():
                self._wake.wait(3600)
                self._wake.clear()
                if self._reload_asked and not self.stop.is_set():
                    self._reload_asked = False
                    sdnotify.reloading("reloading the configuration")
                    scheduler.add_job(
                        self._guarded, args=("reload", self._reload), id="reload", replace_existing=True
                    )
        finally:
            sdnotify.stopping()
            with suppress(Exception):  # not started if start() itself failed
                scheduler.shutdown(wait=True)
            self._stop_health_server()
            try:
                release_instance_lease(self.gw)
            finally:
                self.gw.close_channels()
                for signum, handler in previous.items():
                    signal.signal(signum, handler)
            log.info("russak-gateway stopped")

    def _stop_health_server(self) -> None:
        if self.health_server is not None:
            self.health_server.stop()
            self.health_server = None
