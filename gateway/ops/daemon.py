"""The daemon: poll every inbound channel, tick the reminders, dispatch the outbox.

APScheduler is only the clock that drives these steps (interval and cron triggers in
Europe/Oslo, one worker thread so steps never overlap, ``coalesce`` so a stalled
process does not replay missed runs); it holds no business state, which lives in
the database. Signals only set a flag; the main thread then stops the scheduler
and lets the step in progress finish its transaction.

SQLite mode is single-instance by design: a lease row names the running process,
and a second one refuses to start while that process is alive.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType

from sqlalchemy.exc import IntegrityError

from gateway.cases import retention
from gateway.clock import OSLO
from gateway.context import Gateway, host_name
from gateway.delivery import outbox
from gateway.intake import pipeline as intake
from gateway.models import Cursor, Lease
from gateway.ops import sdnotify
from gateway.ports import ChannelError, InboundChannel
from gateway.staff import reminders

log = logging.getLogger(__name__)

INSTANCE_LEASE = "instance"
LEASE_TTL = timedelta(minutes=5)


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
                and _owner_alive(lease.owner)
            ):
                return False
            if lease is None:
                session.add(Lease(name=name, owner=gw.instance_id, until=now + ttl))
            else:
                lease.owner, lease.until = gw.instance_id, now + ttl
    except IntegrityError:
        return False  # another instance created it a moment ago
    return True


def poll_channel(gw: Gateway, channel: InboundChannel, report: CycleReport) -> None:
    """Take in everything a channel has; acknowledge each item only after its commit.

    With several instances (PostgreSQL) a per-channel lease makes sure only one of
    them polls a source at a time; intake's dedupe would cope, but the source would
    be read twice for nothing.
    """
    taken = 0
    if not try_lease(gw, f"poll:{channel.name}", lease_ttl(gw)):
        log.debug("channel %s: polled by another instance", channel.name)
        return
    try:
        for message in channel.poll(DbCursorStore(gw, channel.name)):
            result = intake.process(gw, message)
            report.outcomes.append(result.outcome)
            if result.outcome == "error":
                if intake.is_storage_trouble(result):
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
    except ChannelError as exc:
        log.warning("channel %s: poll failed: %s", channel.name, exc)
    except Exception:
        log.exception("channel %s: poll crashed; will try again next cycle", channel.name)
    report.taken[channel.name] = taken


def cycle(gw: Gateway) -> CycleReport:
    """One full round: poll every channel, tick, dispatch. Used by --once and the demo."""
    report = CycleReport()
    for channel in gw.inbound_channels():
        poll_channel(gw, channel, report)
    report.reminders = reminders.tick(gw).reminders
    report.dispatched = outbox.dispatch_due(gw)
    return report


# Single instance ------------------------------------------------------------------


def _owner_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text = rest.split(":", 1)[0]
    if host != host_name() or not pid_text.isdigit():
        return True  # another machine: trust the lease time
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def lease_ttl(gw: Gateway) -> timedelta:
    """Long enough to survive a slow step, renewed on every poll and tick."""
    settings = gw.settings.gateway
    return max(
        LEASE_TTL, timedelta(seconds=3 * max(settings.poll_interval_seconds, settings.tick_interval_seconds))
    )


def acquire_instance_lease(gw: Gateway) -> None:
    now = gw.clock.now()
    with gw.session() as session:
        lease = session.get(Lease, INSTANCE_LEASE)
        if (
            lease is not None
            and lease.owner != gw.instance_id
            and lease.until > now
            and _owner_alive(lease.owner)
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


# The long-running process -------------------------------------------------------------


class Daemon:
    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.stop = threading.Event()

    def _guarded(self, name: str, step: object) -> None:
        try:
            step()  # type: ignore[operator]
        except Exception:
            log.exception("%s failed; the daemon carries on", name)

    def _poll(self) -> None:
        report = CycleReport()
        for channel in self.gw.inbound_channels():
            if self.stop.is_set():
                return
            poll_channel(self.gw, channel, report)
        self._renew()

    def _tick(self) -> None:
        self._renew()
        reminders.tick(self.gw)
        if not self.stop.is_set():
            outbox.dispatch_due(self.gw)

    def _purge(self) -> None:
        retention.purge(self.gw)

    def _renew(self) -> None:
        with self.gw.session() as session:
            lease = session.get(Lease, INSTANCE_LEASE)
            if lease is not None and lease.owner == self.gw.instance_id:
                lease.until = self.gw.clock.now() + lease_ttl(self.gw)
        sdnotify.watchdog()

    def run(self) -> None:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.background import BackgroundScheduler

        settings = self.gw.settings.gateway
        acquire_instance_lease(self.gw)
        scheduler = BackgroundScheduler(
            timezone=OSLO,
            executors={"default": ThreadPoolExecutor(max_workers=1)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600},
        )
        start = datetime.now(OSLO)
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

        def _on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("signal %s received; stopping after the current step", signal.Signals(signum).name)
            self.stop.set()

        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
        scheduler.start()
        channels = ", ".join(c.name for c in self.gw.settings.channels)
        log.info(
            "russak-gateway running (instance %s; channels: %s; poll every %.0f s)",
            self.gw.instance_id,
            channels,
            settings.poll_interval_seconds,
        )
        sdnotify.ready(f"polling {channels}")
        try:
            while not self.stop.wait(3600):
                pass
        finally:
            sdnotify.stopping()
            scheduler.shutdown(wait=True)
            release_instance_lease(self.gw)
            log.info("russak-gateway stopped")
