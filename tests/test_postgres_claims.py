"""Several instances on one database: claims, case numbers and the instance lease.

On PostgreSQL two or more gateways may run against one database for availability,
so the outbox claim (``FOR UPDATE SKIP LOCKED`` plus a conditional UPDATE whose row
count proves the claim) must hand every row to exactly one sender, and case
numbers must stay unique and gap-free under concurrent writers. SQLite mode is
single-instance by design, which the instance lease enforces.

The concurrency tests start their threads on a barrier so the claims really race;
every join has a timeout, so a deadlock fails the test instead of hanging CI.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import func, select

from connectors.spool import safe_name
from gateway import cases
from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.intake import pipeline as intake
from gateway.models import Case, InboundMessage, Lease, OutboxItem
from gateway.ops.daemon import (
    LEASE_TTL,
    AlreadyRunning,
    acquire_instance_lease,
    release_instance_lease,
)
from gateway.ports import OutboundMessage, RawMessage, Receipt
from tests import factories
from tests.conftest import build_gateway

ROWS = 200
WORKERS_PER_GATEWAY = 3
JOIN_TIMEOUT = 120.0

postgres_only = pytest.mark.parametrize("database_url", ["postgres"], indirect=True)


@dataclass(frozen=True)
class Send:
    instance: str
    key: str
    duplicate: bool


class RecordingChannel:
    """Wraps the real spool channel and records every send that reaches it.

    The spool answers a repeated key with a duplicate receipt instead of a second
    file, so files alone cannot reveal a double send; this record can.
    """

    def __init__(self, inner: object, instance: str, log: list[Send], lock: threading.Lock) -> None:
        self.name = "spool"
        self._inner = inner
        self._instance = instance
        self._log = log
        self._lock = lock

    def send(self, message: OutboundMessage) -> Receipt:
        receipt: Receipt = self._inner.send(message)  # type: ignore[attr-defined]
        with self._lock:
            self._log.append(Send(self._instance, message.key, receipt.duplicate))
        return receipt


def _second_gateway(first: Gateway, clock: SimulatedClock) -> Gateway:
    """Another process's view: same configuration, own engine, own instance id."""
    return open_gateway(load_settings(first.settings.source), clock=clock)


@pytest.fixture
def pair(tmp_path: Path, database_url: str, clock: SimulatedClock) -> Iterator[tuple[Gateway, Gateway]]:
    first = build_gateway(tmp_path / "gw", database_url, clock)
    second = _second_gateway(first, clock)
    assert first.instance_id != second.instance_id
    yield first, second
    second.close()
    first.close()


def _run_threads(targets: list[threading.Thread]) -> None:
    for thread in targets:
        thread.start()
    for thread in targets:
        thread.join(JOIN_TIMEOUT)
    stuck = [t.name for t in targets if t.is_alive()]
    assert not stuck, f"threads did not finish (deadlock?): {stuck}"


# Outbox claims -------------------------------------------------------------------


@postgres_only
def test_two_gateways_send_every_outbox_row_exactly_once(pair: tuple[Gateway, Gateway]) -> None:
    first, second = pair
    with first.session() as session:
        for i in range(ROWS):
            message = OutboundMessage(
                key=f"load:{i:04d}",
                kind="mail",
                recipients=("saksbehandler@kommune.example",),
                subject=f"Melding {i}",
                body="Dette er en testmelding uten personopplysninger.\n",
            )
            assert outbox.enqueue(first, session, message, kind="reply", channel="spool") is not None

    sends: list[Send] = []
    lock = threading.Lock()
    for gw in pair:
        gw._channels["spool"] = RecordingChannel(gw.channel("spool"), gw.instance_id, sends, lock)

    stats: list[outbox.DispatchStats] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(2 * WORKERS_PER_GATEWAY)

    def worker(gw: Gateway) -> None:
        try:
            barrier.wait(JOIN_TIMEOUT)
            while True:
                # A small limit makes each worker come back for more, so claims interleave.
                result = outbox.dispatch_due(gw, limit=7)
                with lock:
                    stats.append(result)
                if result.total == 0:
                    return
        except BaseException as exc:  # reported in the main thread
            with lock:
                errors.append(exc)

    _run_threads(
        [
            threading.Thread(target=worker, args=(gw,), name=f"{n}-{w}")
            for n, gw in enumerate(pair)
            for w in range(WORKERS_PER_GATEWAY)
        ]
    )
    assert not errors, errors

    keys = [f"load:{i:04d}" for i in range(ROWS)]
    per_key = Counter(s.key for s in sends)
    assert sorted(per_key) == keys
    assert [k for k, n in per_key.items() if n != 1] == []
    assert not any(s.duplicate for s in sends)
    assert sum(s.sent for s in stats) == ROWS
    assert sum(s.retried + s.dead + s.cancelled for s in stats) == 0

    with first.session() as session:
        rows = session.scalars(select(OutboxItem).order_by(OutboxItem.key)).all()
        assert len(rows) == ROWS
        assert {r.status for r in rows} == {"sent"}
        assert [r.key for r in rows if r.attempts != 1] == []
        assert all(r.lease_until is None and r.sent_at is not None for r in rows)
        assert [r.receipt for r in rows] == [f"spool:mail/{safe_name(k)}.eml" for k in keys]
        claimed_by = {r.key: r.lease_owner for r in rows}
    # The instance that claimed a row is the one that sent it, and both took part.
    assert {s.key: s.instance for s in sends} == claimed_by
    assert set(claimed_by.values()) == {first.instance_id, second.instance_id}

    mail_dir = first.settings.source.parent / "spool" / "mail"
    files = sorted(p.name for p in mail_dir.iterdir())
    assert files == sorted(f"{safe_name(k)}.eml" for k in keys)
    assert not any(p.name.startswith(".") for p in mail_dir.iterdir())  # no leftovers


# Case numbers --------------------------------------------------------------------


def test_concurrent_case_numbers_are_unique_and_gap_free(pair: tuple[Gateway, Gateway]) -> None:
    """Writers race for the first number of a year (the insert path) and then for
    increments; allocations rolled back with their transaction leave no gap."""
    threads_per_gateway, per_thread = 4, 15
    committed: list[str] = []
    rolled_back = 0
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2 * threads_per_gateway)

    class Abandon(Exception):
        pass

    def worker(gw: Gateway, seed: int) -> None:
        nonlocal rolled_back
        try:
            barrier.wait(JOIN_TIMEOUT)
            for i in range(per_thread):
                try:
                    with gw.session() as session:
                        number = cases.next_case_number(session, 2027)
                        if (seed + i) % 5 == 0:
                            raise Abandon  # the case was not created after all
                    with lock:
                        committed.append(number)
                except Abandon:
                    with lock:
                        rolled_back += 1
        except BaseException as exc:  # reported in the main thread
            with lock:
                errors.append(exc)

    _run_threads(
        [
            threading.Thread(target=worker, args=(gw, n * threads_per_gateway + t), name=f"{n}-{t}")
            for n, gw in enumerate(pair)
            for t in range(threads_per_gateway)
        ]
    )
    assert not errors, errors
    total = 2 * threads_per_gateway * per_thread
    assert rolled_back > 0
    assert len(committed) == total - rolled_back
    assert sorted(committed) == [f"RUS-2027-{n:04d}" for n in range(1, len(committed) + 1)]
    # Another year has its own counter.
    with pair[0].session() as session:
        assert cases.next_case_number(session, 2028) == "RUS-2028-0001"
    with pair[1].session() as session:
        assert cases.next_case_number(session, 2027) == f"RUS-2027-{len(committed) + 1:04d}"


# Intake ---------------------------------------------------------------------------


@postgres_only
def test_two_gateways_taking_in_the_same_messages_open_each_case_once(
    pair: tuple[Gateway, Gateway],
) -> None:
    """Two instances polling one source see the same messages. Two workers walk the
    list in step, so they race on each message; a third walks it backwards, so
    different cases are also opened at the same moment."""
    documents = [factories.order_xml(national_id=factories.fnr(start=100 + 10 * i)) for i in range(30)]
    outcomes: dict[int, list[str]] = {i: [] for i in range(len(documents))}
    errors: list[BaseException] = []
    lock = threading.Lock()
    barrier = threading.Barrier(3)

    def worker(gw: Gateway, order: list[int]) -> None:
        try:
            barrier.wait(JOIN_TIMEOUT)
            for i in order:
                data = documents[i]
                message = RawMessage(
                    channel="spool",
                    external_id="sha256:" + hashlib.sha256(data).hexdigest(),
                    content=data,
                    kind="xml",
                    received_at=gw.clock.now(),
                )
                outcome = intake.process(gw, message).outcome
                with lock:
                    outcomes[i].append(outcome)
        except BaseException as exc:  # reported in the main thread
            with lock:
                errors.append(exc)

    forwards = list(range(len(documents)))
    _run_threads(
        [
            threading.Thread(target=worker, args=(pair[0], forwards), name="first"),
            threading.Thread(target=worker, args=(pair[1], forwards), name="second"),
            threading.Thread(target=worker, args=(pair[1], forwards[::-1]), name="backwards"),
        ]
    )
    assert not errors, errors
    expected = ["case", "duplicate", "duplicate"]
    assert {i: sorted(o) for i, o in outcomes.items() if sorted(o) != expected} == {}
    with pair[0].session() as session:
        numbers = sorted(session.scalars(select(Case.number)))
        assert session.scalar(select(func.count()).select_from(InboundMessage)) == len(documents)
    assert numbers == [f"RUS-2026-{n:04d}" for n in range(1, len(documents) + 1)]


# The instance lease ------------------------------------------------------------------


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _lease(gw: Gateway) -> Lease | None:
    with gw.session() as session:
        return session.get(Lease, "instance")


def test_sqlite_refuses_a_second_instance_while_the_first_is_alive(
    gw_sqlite: Gateway, clock: SimulatedClock
) -> None:
    second = _second_gateway(gw_sqlite, clock)
    try:
        acquire_instance_lease(gw_sqlite)
        acquire_instance_lease(gw_sqlite)  # renewing one's own lease is fine
        with pytest.raises(AlreadyRunning, match="single-instance") as refused:
            acquire_instance_lease(second)
        assert gw_sqlite.instance_id in str(refused.value)
        lease = _lease(gw_sqlite)
        assert lease is not None and lease.owner == gw_sqlite.instance_id

        # The refused instance cannot release what it does not hold.
        release_instance_lease(second)
        assert (lease := _lease(gw_sqlite)) is not None and lease.owner == gw_sqlite.instance_id

        # A clean stop releases the lease, and the next instance may start.
        release_instance_lease(gw_sqlite)
        assert _lease(gw_sqlite) is None
        acquire_instance_lease(second)
        assert (lease := _lease(second)) is not None and lease.owner == second.instance_id
    finally:
        second.close()


def test_sqlite_takes_over_the_lease_of_a_dead_process(gw_sqlite: Gateway, clock: SimulatedClock) -> None:
    """A crashed daemon leaves its lease behind; its pid being gone frees it at once."""
    gw_sqlite.instance_id = f"{os.uname().nodename}:{_dead_pid()}:deadbeef"
    acquire_instance_lease(gw_sqlite)
    second = _second_gateway(gw_sqlite, clock)
    try:
        acquire_instance_lease(second)  # no AlreadyRunning, though the lease is unexpired
        lease = _lease(second)
        assert lease is not None
        assert lease.owner == second.instance_id
        assert lease.until == clock.now() + LEASE_TTL
    finally:
        second.close()


def test_sqlite_takes_over_an_expired_lease_even_from_a_live_owner(
    gw_sqlite: Gateway, clock: SimulatedClock
) -> None:
    """A live process that stopped renewing (hung, or on another machine) loses the lease."""
    acquire_instance_lease(gw_sqlite)
    second = _second_gateway(gw_sqlite, clock)
    try:
        with pytest.raises(AlreadyRunning):
            acquire_instance_lease(second)
        clock.advance(LEASE_TTL + timedelta(seconds=1))
        acquire_instance_lease(second)
        assert (lease := _lease(second)) is not None and lease.owner == second.instance_id
    finally:
        second.close()


@postgres_only
def test_postgres_lets_a_second_instance_run_without_stealing_the_lease(
    pair: tuple[Gateway, Gateway],
) -> None:
    first, second = pair
    acquire_instance_lease(first)
    acquire_instance_lease(second)  # several instances are the point of PostgreSQL mode
    lease = _lease(first)
    assert lease is not None and lease.owner == first.instance_id


def test_poll_lease_is_taken_over_from_a_dead_process_at_once(gw: Gateway) -> None:
    from gateway.context import host_name
    from gateway.ops.daemon import try_lease

    with gw.session() as s:  # a crashed daemon on this host left its poll lease behind
        s.add(
            Lease(
                name="poll:spool",
                owner=f"{host_name()}:999999999:deadbeef",
                until=gw.clock.now() + timedelta(hours=1),
            )
        )
    assert try_lease(gw, "poll:spool", timedelta(minutes=5))
    with gw.session() as s:  # a live owner elsewhere keeps it
        s.get_one(Lease, "poll:spool").owner = "other-host:1:cafebabe"
    assert not try_lease(gw, "poll:spool", timedelta(minutes=5))
