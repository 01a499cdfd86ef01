"""The daemon's Prometheus metrics, in a registry of its own (never the global one).

Two kinds:

- **events the daemon counts as it works** (``Metrics``): messages taken in, by
  channel and outcome; dispatch attempts, by result; poll latency and the time of the
  last successful poll, per channel; configuration reloads. They live in memory and
  start at zero with the process, as Prometheus counters do.
- **the state of the queues now** (``HealthCollector``): read at scrape time from
  ``gateway.ops.status.gather``, the same facts as ``russak status`` and
  ``/healthz``, so a graph and the command never disagree.

Names and labels are listed in ``docs/operations-reference.md``. No label carries
personal data: channels are configured names, outcomes and results fixed words.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.ops.status import Health

log = logging.getLogger(__name__)

PREFIX = "russak"
POLL_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
DISPATCH_RESULTS = ("sent", "retried", "dead", "cancelled")
POLL_RESULTS = ("ok", "stopped", "failed", "crashed", "storage", "busy")


class Metrics:
    """Every metric the daemon updates, registered in ``self.registry``."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.intake = Counter(
            f"{PREFIX}_intake_messages",
            "Inbound messages judged by intake, by channel and outcome "
            "(case, duplicate, quarantined, error, ...).",
            ["channel", "outcome"],
            registry=self.registry,
        )
        self.dispatch = Counter(
            f"{PREFIX}_dispatch_attempts",
            "Outbox rows claimed for sending, by result (sent, retried, dead, cancelled).",
            ["result"],
            registry=self.registry,
        )
        self.polls = Counter(
            f"{PREFIX}_polls",
            "Polls of an inbound channel, by channel and result "
            "(ok, stopped, failed, crashed, storage, busy).",
            ["channel", "result"],
            registry=self.registry,
        )
        self.poll_seconds = Histogram(
            f"{PREFIX}_poll_duration_seconds",
            "Time one poll of a channel took, intake of what it brought included.",
            ["channel"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.last_poll = Gauge(
            f"{PREFIX}_last_successful_poll_timestamp_seconds",
            "When a poll of the channel last completed without error (Unix time).",
            ["channel"],
            registry=self.registry,
        )
        self.reloads = Counter(
            f"{PREFIX}_config_reloads",
            "SIGHUP reloads of the configuration, by result (applied, refused).",
            ["result"],
            registry=self.registry,
        )
        for result in DISPATCH_RESULTS:
            self.dispatch.labels(result=result)  # a zero is better than a missing series
        for result in ("applied", "refused"):
            self.reloads.labels(result=result)

    def channel_seen(self, channel: str) -> None:
        """Create a channel's series at zero, so rates work from the first scrape."""
        self.poll_seconds.labels(channel=channel)
        for result in ("ok", "failed"):
            self.polls.labels(channel=channel, result=result)

    def polled(self, channel: str, result: str, seconds: float, at: float) -> None:
        self.polls.labels(channel=channel, result=result).inc()
        self.poll_seconds.labels(channel=channel).observe(seconds)
        if result in ("ok", "stopped"):
            self.last_poll.labels(channel=channel).set(at)

    def taken(self, channel: str, outcome: str) -> None:
        self.intake.labels(channel=channel, outcome=outcome).inc()

    def dispatched(self, result: str) -> None:
        self.dispatch.labels(result=result).inc()

    def watch_health(self, health: Callable[[], Health]) -> None:
        """Serve the queue gauges from ``health()`` at every scrape."""
        self.registry.register(HealthCollector(health))


class HealthCollector(Collector):
    """Gauges of the state now, from one ``gather`` per scrape.

    If the facts cannot be read (the database is failing), only ``russak_healthy 0``
    is served, with the reason in the daemon's log at debug level; the event metrics
    are served as usual.
    """

    def __init__(self, health: Callable[[], Health]) -> None:
        self._health = health

    def describe(self) -> Iterator[Metric]:
        return iter(())  # names are fixed below; nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        healthy = GaugeMetricFamily(
            f"{PREFIX}_healthy", "1 when russak status would say healthy, else 0 (see /healthz)."
        )
        try:
            health = self._health()
        except Exception:
            log.debug("metrics: health facts could not be read", exc_info=True)
            healthy.add_metric([], 0)
            yield healthy
            return
        healthy.add_metric([], 1 if health.healthy else 0)
        yield healthy
        yield _gauge("outbox_pending", "Outbox rows waiting to be sent.", health.outbox_pending)
        yield _gauge("outbox_dead", "Outbox rows given up on (dead letters).", health.dead_letters)
        age = health.oldest_pending_age
        yield _gauge(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox row still waiting to be sent (0 when none).",
            0.0 if age is None else age.total_seconds(),
        )
        yield _gauge(
            "quarantine_open", "Quarantined inbound messages not yet released.", health.quarantine_open
        )
        yield _gauge(
            "daemon_running", "1 when the instance lease is held by a live daemon.", health.daemon.running
        )


def _gauge(name: str, documentation: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(f"{PREFIX}_{name}", documentation)
    family.add_metric([], float(value))
    return family
