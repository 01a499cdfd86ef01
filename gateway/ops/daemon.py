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

The steps are in ``gateway.ops.steps`` (poll, tick, ``cycle`` for ``run --once``),
``gateway.ops.dispatch`` (one line per send attempt) and ``gateway.ops.leases``
(single instance). After every poll and tick the daemon sends systemd a one-line
``STATUS=`` built from the facts of ``russak status`` (``gateway.ops.status``); with
``gateway.health_listen`` it serves ``/healthz`` and ``/metrics``
(``gateway.ops.health``, ``gateway.ops.metrics``). ``gateway.ops.exitcodes`` says
how ``russak run`` ends.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timedelta
from types import FrameType
from typing import Any

from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler

from gateway.cases import retention
from gateway.clock import OSLO
from gateway.config import ConfigError, GatewaySettings, listen_address
from gateway.context import Gateway
from gateway.delivery.outbox import DispatchStats
from gateway.ops import memory, sdnotify
from gateway.ops import status as health_facts
from gateway.ops.dispatch import DaemonGateway, dispatch
from gateway.ops.health import HealthServer, status_line
from gateway.ops.leases import (
    INSTANCE_LEASE,
    LEASE_TTL,
    AlreadyRunning,
    acquire_instance_lease,
    lease_ttl,
    release_instance_lease,
    renew_instance_lease,
    try_lease,
)
from gateway.ops.metrics import Metrics
from gateway.ops.reload import read_again
from gateway.ops.steps import (
    POLL_STEP_SECONDS,
    CycleReport,
    DbCursorStore,
    PollResult,
    cycle,
    poll_channel,
    tick,
)
from gateway.ports import ChannelError
from gateway.privacy import configure_logging

__all__ = [  # the steps and leases stay importable from here, as before the split
    "INSTANCE_LEASE",
    "LEASE_TTL",
    "AlreadyRunning",
    "CycleReport",
    "Daemon",
    "DaemonGateway",
    "DbCursorStore",
    "PollResult",
    "acquire_instance_lease",
    "cycle",
    "lease_ttl",
    "poll_channel",
    "release_instance_lease",
    "tick",
    "try_lease",
]

log = logging.getLogger(__name__)


class Daemon:
    """``russak run``: the scheduler, the signals, the health endpoint.

    ``log_level`` is the command line's ``--log-level``, if given: it stays in force
    over the file's ``gateway.log_level`` across reloads.
    """

    def __init__(self, gw: Gateway, *, log_level: str | None = None) -> None:
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
        finally:
            memory.release_free_heap()  # rest at the size of what is kept, not of the step

    def _poll(self) -> None:
        """One poll step of every channel, each at most ``POLL_STEP_SECONDS``.

        A channel with more waiting gets another step right after this one, but as a
        job of its own: whatever fell due meanwhile (the tick, a reload) runs first, in
        the order it was queued for the one worker, and the outbox sends what is due
        before the next step. A large inbox is therefore taken in steps, and the lease
        and the systemd watchdog are renewed after every batch.
        """
        report = CycleReport()
        gw = self.gw
        more = False
        for channel in gw.inbound_channels():
            if self.stop.is_set():
                return
            polled = poll_channel(
                gw,
                channel,
                report,
                stop=self.stop,
                metrics=self.metrics,
                budget_seconds=POLL_STEP_SECONDS,
                heartbeat=self._renew,
            )
            more = more or polled.more
        self._renew()
        self._report_status()
        if more and not self.stop.is_set():
            self._dispatch()
            self._poll_again()

    def _poll_again(self) -> None:
        """Queue the next poll step now, behind the jobs already waiting for the worker.

        A one-off job under a fresh id each time: the job that calls this (``poll``, or
        the step before) is still running, and APScheduler skips a job whose id has an
        instance running. Each step queues at most one more, so they never pile up.
        """
        if self._scheduler is not None:
            self._scheduler.add_job(self._guarded, args=("poll", self._poll), name="poll step")

    def _tick(self) -> None:
        self._renew()
        tick(self.gw)
        if not self.stop.is_set():
            self._dispatch()
        self._report_status()

    def _dispatch(self) -> DispatchStats:
        return dispatch(self.gw, self.stop, self.metrics)

    def _purge(self) -> None:
        retention.purge(self.gw)

    def _renew(self) -> None:
        renew_instance_lease(self.gw)
        sdnotify.watchdog()

    def health(self) -> health_facts.Health:
        """The facts of ``russak status``, now (any thread)."""
        return health_facts.gather(self.gw)

    def _report_status(self) -> None:
        if not sdnotify.enabled():
            return
        sdnotify.status(self.status_line())

    def status_line(self) -> str:
        try:
            return status_line(self.health())
        except Exception as exc:
            log.debug("status: health facts could not be read", exc_info=True)
            return f"health facts cannot be read ({type(exc).__name__})"

    # -- SIGHUP ----------------------------------------------------------------------

    def _reload(self) -> None:
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
