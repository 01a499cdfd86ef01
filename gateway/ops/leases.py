"""Leases: the single-instance lease of the daemon and the poll lease of each channel.

SQLite mode is single-instance by design: a lease row (``instance``) names the
running process, and a second one refuses to start while that process is alive (a
dead owner on the same host is taken over at once). With PostgreSQL several
instances may run; each channel is then polled by one of them at a time, under a
``poll:<channel>`` lease. The rules for "alive" and the lease time are
``gateway.ops.status``'s, so ``russak status`` reads the leases as they are meant.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy.exc import IntegrityError

from gateway.context import Gateway
from gateway.models import Lease
from gateway.ops import status as health_facts

__all__ = [
    "INSTANCE_LEASE",
    "LEASE_TTL",
    "AlreadyRunning",
    "acquire_instance_lease",
    "lease_ttl",
    "release_instance_lease",
    "renew_instance_lease",
    "try_lease",
]

INSTANCE_LEASE = health_facts.INSTANCE_LEASE
LEASE_TTL = health_facts.MIN_LEASE_TTL


class AlreadyRunning(RuntimeError):
    pass


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


def lease_ttl(gw: Gateway) -> timedelta:
    """Long enough to survive a slow step, renewed on every poll and tick."""
    return health_facts.lease_ttl(gw.settings.gateway)


def acquire_instance_lease(gw: Gateway) -> None:
    """Take the instance lease, or refuse on SQLite while another live gateway holds it.

    Two instances starting at the same moment on PostgreSQL may both find no row; the
    one whose insert loses the race simply runs beside the other (several instances
    are the point of PostgreSQL mode). On SQLite the loser is refused.
    """
    try:
        _take_instance_lease(gw)
    except IntegrityError:
        _take_instance_lease(gw)  # the row exists now: decide against its owner


def _take_instance_lease(gw: Gateway) -> None:
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


def renew_instance_lease(gw: Gateway) -> None:
    """Move our instance lease on by one lease time.

    With several instances (PostgreSQL) one of them holds the row; when it stops or
    dies, the next renewal of a survivor takes the row over, so ``status`` and
    ``/healthz`` keep seeing a running daemon.
    """
    now = gw.clock.now()
    try:
        with gw.session() as session:
            lease = session.get(Lease, INSTANCE_LEASE)
            if lease is None:
                session.add(Lease(name=INSTANCE_LEASE, owner=gw.instance_id, until=now + lease_ttl(gw)))
            elif (
                lease.owner == gw.instance_id
                or lease.until <= now
                or not health_facts.owner_alive(lease.owner)
            ):
                lease.owner, lease.until = gw.instance_id, now + lease_ttl(gw)
    except IntegrityError:
        pass  # another survivor took it over at the same moment
