"""Health facts: what ``russak status`` and ``russak doctor`` report, in one place.

``gather(gw)`` reads the database only (no channel is built, nothing is polled or
sent) and returns a ``Health``: whether a daemon holds the instance lease, when each
channel was last polled, the outbox backlog and dead letters, open quarantine, the
next digest and the schema revision. ``Health.problems`` says why it is degraded;
``Health.summary()`` is one line, fit for systemd's ``STATUS=`` or a health check.

When a channel was last polled is read from its ``poll:<channel>`` lease, which a
poll takes (or renews) when it starts, for the lease time: the poll started at
``until - ttl``. That is a proxy: it says a poll began, not that it succeeded, and
the gateway records no poll errors yet (they are in the journal). For outbound use
the outbox is the record: the last delivery and the last error of a row still
pending or dead.

``channel_problems`` is doctor's check of one channel's folders: the connector's own
``check()`` when it has one, else (for a spool) whether the folders are writable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from gateway import db
from gateway.clock import OSLO
from gateway.config import ChannelSettings, GatewaySettings
from gateway.context import Gateway, host_name
from gateway.models import Lease, OutboxItem, QuarantineEntry
from gateway.ports import ChannelError

INSTANCE_LEASE = "instance"  # as gateway.ops.daemon names it
POLL_LEASE_PREFIX = "poll:"
MIN_LEASE_TTL = timedelta(minutes=5)
BACKLOG_LIMIT = timedelta(hours=1)


def lease_ttl(settings: GatewaySettings) -> timedelta:
    """The lease time the daemon uses (``gateway.ops.daemon.lease_ttl``): the same rule."""
    return max(
        MIN_LEASE_TTL,
        timedelta(seconds=3 * max(settings.poll_interval_seconds, settings.tick_interval_seconds)),
    )


def owner_alive(owner: str) -> bool:
    """False only when the owner is a process on this host that no longer exists."""
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


def schema_revisions(engine: Engine) -> tuple[str | None, str | None]:
    """The database's Alembic revision and the newest this code knows (``None``: none).

    Without loading Alembic (with Mako, about 150 ms): the head is ``db.SCHEMA_HEAD``,
    which tests/test_house.py keeps equal to the migrations' head.
    """
    return db.schema_revision(engine), db.SCHEMA_HEAD


@dataclass(frozen=True)
class DaemonFacts:
    running: bool
    owner: str | None = None
    lease_until: datetime | None = None


@dataclass(frozen=True)
class ChannelFacts:
    name: str
    type: str
    inbound: bool
    outbound: bool
    last_poll_at: datetime | None = None  # from the poll lease: a poll started then
    polled_by: str | None = None
    last_delivery_at: datetime | None = None
    last_error: str | None = None  # of an outbox row still pending or dead


@dataclass(frozen=True)
class Health:
    now: datetime
    daemon: DaemonFacts
    channels: list[ChannelFacts]
    outbox_pending: int
    oldest_pending_at: datetime | None
    dead_letters: int
    quarantine_open: int
    next_digest_at: datetime | None
    schema_revision: str | None
    schema_head: str | None
    problems: list[str] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return not self.problems

    @property
    def oldest_pending_age(self) -> timedelta | None:
        return (
            None if self.oldest_pending_at is None else max(timedelta(0), self.now - self.oldest_pending_at)
        )

    def summary(self) -> str:
        """One line: ``healthy; outbox 0 pending, 0 dead; quarantine 0`` or what is wrong."""
        state = "healthy" if self.healthy else "degraded: " + "; ".join(self.problems)
        return (
            f"{state}; outbox {self.outbox_pending} pending, {self.dead_letters} dead; "
            f"quarantine {self.quarantine_open}"
        )

    def as_dict(self) -> dict[str, Any]:
        """Plain values (datetimes stay datetimes; the caller renders them)."""
        age = self.oldest_pending_age
        return {
            "healthy": self.healthy,
            "problems": list(self.problems),
            "now": self.now,
            "daemon": {
                "running": self.daemon.running,
                "owner": self.daemon.owner,
                "lease_until": self.daemon.lease_until,
            },
            "channels": [
                {
                    "name": c.name,
                    "type": c.type,
                    "inbound": c.inbound,
                    "outbound": c.outbound,
                    "last_poll_at": c.last_poll_at,
                    "last_poll_source": "poll lease" if c.last_poll_at else None,
                    "polled_by": c.polled_by,
                    "last_delivery_at": c.last_delivery_at,
                    "last_error": c.last_error,
                }
                for c in self.channels
            ],
            "outbox": {
                "pending": self.outbox_pending,
                "oldest_pending_at": self.oldest_pending_at,
                "oldest_pending_age_seconds": None if age is None else int(age.total_seconds()),
                "dead": self.dead_letters,
            },
            "quarantine": {"open": self.quarantine_open},
            "next_digest_at": self.next_digest_at,
            "schema": {
                "revision": self.schema_revision,
                "head": self.schema_head,
                "current": self.schema_revision == self.schema_head,
            },
        }


def _daemon(gw: Gateway, leases: dict[str, Lease], now: datetime) -> DaemonFacts:
    lease = leases.get(INSTANCE_LEASE)
    if lease is None:
        return DaemonFacts(running=False)
    running = lease.until > now and owner_alive(lease.owner)
    return DaemonFacts(running=running, owner=lease.owner, lease_until=lease.until)


def _channels(gw: Gateway, leases: dict[str, Lease]) -> list[ChannelFacts]:
    ttl = lease_ttl(gw.settings.gateway)
    found = []
    with gw.session() as session:
        for entry in gw.settings.channels:
            lease = leases.get(POLL_LEASE_PREFIX + entry.name)
            last_delivery = session.scalar(
                select(func.max(OutboxItem.sent_at)).where(OutboxItem.channel == entry.name)
            )
            last_error = session.scalar(
                select(OutboxItem.last_error)
                .where(
                    OutboxItem.channel == entry.name,
                    OutboxItem.status.in_(("pending", "dead")),
                    OutboxItem.last_error.is_not(None),
                )
                .order_by(OutboxItem.id.desc())
                .limit(1)
            )
            found.append(
                ChannelFacts(
                    name=entry.name,
                    type=entry.type,
                    inbound=entry.inbound,
                    outbound=entry.outbound,
                    last_poll_at=None if lease is None else lease.until - ttl,
                    polled_by=None if lease is None else lease.owner,
                    last_delivery_at=last_delivery,
                    last_error=last_error,
                )
            )
    return found


def next_digest(gw: Gateway, now: datetime) -> datetime | None:
    """When the next daily digest is due: ``digest_time`` on a working day, in Oslo.

    Today's time if today is a working day and its digest is still to come (or is
    due and not yet made), else the next working day's.
    """
    local = now.astimezone(OSLO)
    day = local.date()
    at_time = gw.settings.gateway.digest_time
    for _ in range(400):
        if gw.calendar.is_working_day(day):
            at = datetime.combine(day, at_time, tzinfo=OSLO)
            if at > local:
                return at
            keys = [f"digest:{u.code}:{day.isoformat()}" for u in gw.settings.units]
            with gw.session() as session:
                made = session.scalar(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.key.in_(keys))
                )
            if (made or 0) < len(keys):
                return at  # due now: the next tick makes it
        day += timedelta(days=1)
    return None


def gather(gw: Gateway) -> Health:
    """Read every health fact from the database; build no channel, send nothing."""
    now = gw.clock.now()
    with gw.session() as session:
        leases = {lease.name: lease for lease in session.scalars(select(Lease))}
        for lease in leases.values():
            session.expunge(lease)
        pending, oldest = session.execute(
            select(func.count(), func.min(OutboxItem.created_at)).where(OutboxItem.status == "pending")
        ).one()
        dead = session.scalar(select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "dead"))
        quarantined = session.scalar(
            select(func.count()).select_from(QuarantineEntry).where(QuarantineEntry.released_at.is_(None))
        )
    revision, head = schema_revisions(gw.engine)
    daemon = _daemon(gw, leases, now)
    health = Health(
        now=now,
        daemon=daemon,
        channels=_channels(gw, leases),
        outbox_pending=pending or 0,
        oldest_pending_at=oldest,
        dead_letters=dead or 0,
        quarantine_open=quarantined or 0,
        next_digest_at=next_digest(gw, now),
        schema_revision=revision,
        schema_head=head,
    )
    health.problems.extend(_problems(health))
    return health


def _problems(health: Health) -> list[str]:
    problems = []
    if not health.daemon.running:
        problems.append("no daemon running")
    if health.dead_letters:
        problems.append(f"{health.dead_letters} dead letter(s)")
    if health.quarantine_open:
        problems.append(f"{health.quarantine_open} message(s) in quarantine")
    age = health.oldest_pending_age
    if age is not None and age > BACKLOG_LIMIT:
        problems.append(f"outbox backlog older than {int(BACKLOG_LIMIT.total_seconds() // 3600)} hour")
    if health.schema_revision != health.schema_head:
        problems.append(
            f"database schema {health.schema_revision or 'none'}, code expects {health.schema_head}"
        )
    return problems


# doctor: one channel's folders -------------------------------------------------------------


def channel_problems(gw: Gateway, entry: ChannelSettings) -> list[str]:
    """What keeps a channel from working; a ``ConfigError`` (unknown type) propagates.

    Builds the channel (for a spool: the root must exist, the folders are made) and
    asks its ``check()`` if it has one; a spool channel without it gets the folder
    writability check here.
    """
    try:
        channel = gw.channel(entry.name)
    except ChannelError as exc:
        return [str(exc) or type(exc).__name__]
    check = getattr(channel, "check", None)
    if callable(check):
        return [str(p) for p in check()]
    if entry.type != "spool":
        return []
    root = Path(
        str(getattr(channel, "root", gw.settings.resolve_path(str(entry.options().get("path", "spool")))))
    )
    found = []
    for folder in (root, root / "inbox", root / "outbox", root / "mail"):
        if not folder.is_dir():
            found.append(f"spool: {folder} is missing")
        elif not os.access(folder, os.W_OK | os.X_OK):
            found.append(f"spool: {folder} is not writable by this process (uid {os.geteuid()})")
    return found
