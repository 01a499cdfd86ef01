"""Two gateways on one PostgreSQL database, one of them SIGKILLed again and again (#8).

PostgreSQL mode allows several instances for availability: each channel is polled
by one at a time under its ``poll:<channel>`` lease, which the other takes over the
moment the holder's process is gone, and outbox rows are claimed with ``FOR UPDATE
SKIP LOCKED`` and a lease that a killed sender lets expire. This test runs two real
``russak run`` daemons on one fresh database and one shared spool: 500 distinct
orders wait in the inbox (a few re-sent and re-dropped copies arrive later), staff
confirm a stream of notices while the daemons work, and one of the two (chosen at
random, often the one polling the inbox) is killed with SIGKILL at a random moment
and restarted, many times. At the end both run to completion and the end state is
counted: one case per OrdreId, nothing quarantined or left pending, each confirmed
notice sent once and present once in the spool outbox, no temporary file left.

It reuses the SQLite kill harness of ``tests/test_crash.py`` (the daemon as a child
process, the kill records, the state read from outside). Kill timing is random
(seeded; the seed is printed on failure and can be replayed with
``RUSSAK_TWO_INSTANCES_SEED``); every assertion is about end state.
"""

from __future__ import annotations

import os
import random
import re
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pytest
from lxml import etree
from sqlalchemy import Engine, create_engine, select, text

from connectors.spool import drop_file, safe_name
from gateway import cases as svc
from gateway.app import open_gateway
from gateway.clock import SimulatedClock, SystemClock, local_today
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.models import Case, IntakeAttempt, Notice, OrderRecord, OutboxItem, QuarantineEntry
from gateway.staff.commands import Command, perform
from tests.conftest import _postgres_database
from tests.factories import fnr, order_xml, write_config
from tests.test_crash import (
    DELIVERED,
    DELIVERY_LINE,
    INTAKE_LINE,
    NOTICE_NS,
    READY,
    Crashes,
    Harness,
    Kill,
    Paths,
    Run,
    SentOrder,
    child_env,
    gateway_of,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

ORDERS = 500  # distinct OrdreIds, all in the inbox before the daemons start
REPEAT_EVERY = 20  # every 20th order arrives again later: the same bytes, and re-sent
KILLS = 24
NOTICES_PER_KILL = 2  # cases driven to a confirmed notice between two kills
ATTENDED_EVERY = 4  # and every 4th kill one case where the person attended: never a notice
ACTOR = "cli:two-instances-test"
SEED_VARIABLE = "RUSSAK_TWO_INSTANCES_SEED"
TUNING = {  # over tests.factories.write_config's values: quick polls and ticks
    "poll_interval_seconds": "0.1",
    "tick_interval_seconds": "0.5",
    "lease_seconds": "4",  # how long a row claimed by a killed sender waits
}
FINISH_TIMEOUT = 60.0  # to drive the notices still owed
STALL_TIMEOUT = 30.0  # the end: longer than any lease a killed run leaves
WORK = (INTAKE_LINE, DELIVERY_LINE)


# The daemons and the shared state ----------------------------------------------------------


WARM_UP = (
    "import apscheduler.executors.pool, apscheduler.schedulers.background, psycopg, "
    "gateway.app, gateway.cli.run, gateway.ops.daemon, gateway.ops.health"
)


@dataclass
class ModuleHarness(Harness):
    """test_crash's harness, starting ``python -m gateway … run`` at INFO (quieter logs).

    The children keep their compiled bytecode in ``pycache`` (as an installed wheel
    has it), even where the environment says PYTHONDONTWRITEBYTECODE: a source
    checkout would otherwise compile every module again on each of some thirty
    restarts, which on a small machine is most of the start-up.
    """

    pycache: Path | None = None

    def env(self) -> dict[str, str]:
        env = child_env()
        if self.pycache is not None:
            env.pop("PYTHONDONTWRITEBYTECODE", None)
            env["PYTHONPYCACHEPREFIX"] = str(self.pycache)
        return env

    def warm_up(self) -> subprocess.Popen[bytes]:
        """Compile what ``russak run`` imports, in the background, before the first start."""
        return subprocess.Popen([sys.executable, "-c", WARM_UP], env=self.env(), cwd=self.config.parent)

    def start(self) -> Run:
        self.runs += 1
        log = self.logs / f"daemon-{self.runs:03d}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-m", "gateway", "--config", str(self.config), "run"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
            env=self.env(),
        )
        return Run(proc, log, handle, time.monotonic())


@dataclass(frozen=True)
class SharedPaths(Paths):
    """test_crash's view from outside, reading the PostgreSQL database instead of a file."""

    engine: Engine | None = None

    def scalar(self, sql: str) -> int:
        assert self.engine is not None
        with self.engine.connect() as conn:
            value = conn.execute(text(sql)).scalar()
        return int(value or 0)

    def poll_owner(self) -> str:
        assert self.engine is not None
        with self.engine.connect() as conn:
            owner = conn.execute(text("SELECT owner FROM leases WHERE name = 'poll:spool'")).scalar()
        return str(owner or "")


def owned_by(owner: str, pid: int) -> bool:
    return f":{pid}:" in owner


class Tail:
    """The intakes and deliveries a run has logged, read incrementally (whole lines only)."""

    def __init__(self, run: Run) -> None:
        self.run = run
        self._offset = 0
        self._count = 0
        self.ready = False

    def count(self) -> int:
        with self.run.log.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read()
        end = data.rfind(b"\n") + 1
        self._offset += end
        self._count += sum(data[:end].count(marker) for marker in WORK)
        self.ready = self.ready or READY in data[:end]
        return self._count

    def is_ready(self) -> bool:
        self.count()
        return self.ready

    def wait(self, more: int, timeout: float) -> bool:
        """Until ``more`` further intakes or deliveries are logged; False if they were not."""
        target = self.count() + more
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.run.proc.poll() is None:
            if self.count() >= target:
                return True
            time.sleep(0.01)
        return False


def tune(config: Path, values: dict[str, str]) -> None:
    """Replace ``key = value`` lines of the written configuration."""
    body = config.read_text(encoding="utf-8")
    for key, value in values.items():
        body, found = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", body)
        assert found == 1, key
    config.write_text(body, encoding="utf-8")


@dataclass
class KillLog:
    """test_crash's ``Crashes``, plus what only two instances can tell."""

    crashes: Crashes = field(default_factory=Crashes)
    of_poller: int = 0  # the victim held the poll lease while orders were waiting
    during_intake: int = 0  # orders were still waiting in the inbox when it died

    def summary(self) -> str:
        return (
            f"{self.crashes.summary()}; {self.during_intake} with orders in the inbox, "
            f"{self.of_poller} of the instance polling it"
        )


# Test data --------------------------------------------------------------------------------


def make_orders(rng: random.Random) -> list[SentOrder]:
    """500 distinct people (synthetic numbers, adults), case references and OrdreIds."""
    orders = []
    for i in range(ORDERS):
        birth = date(1975, 1, 1) + timedelta(days=13 * i)
        national_id = fnr(birth)
        order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        reference = str(24_300_000 + i)
        data = order_xml(order_id=order_id, national_id=national_id, birth=birth, case_reference=reference)
        orders.append(SentOrder(order_id, national_id, reference, data))
    assert len({o.national_id for o in orders}) == ORDERS
    assert len({o.order_id for o in orders}) == ORDERS
    return orders


def late_repeats(orders: list[SentOrder]) -> dict[int, list[tuple[str, bytes]]]:
    """Files dropped before each kill: byte-identical copies and re-sends (a new ``Sendt``)."""
    repeats: dict[int, list[tuple[str, bytes]]] = {}
    for n, i in enumerate(range(0, ORDERS, REPEAT_EVERY)):
        data = orders[i].data
        resent = data.replace(b"2026-11-20T09:00:00+00:00", b"2026-11-20T09:45:00+00:00")
        assert resent != data
        repeats.setdefault(n % KILLS, []).extend(
            [(f"ordre-{i:03d}-kopi.xml", data), (f"ordre-{i:03d}-igjen.xml", resent)]
        )
    return repeats


@dataclass
class Staff:
    """Staff in the test process: book meetings in the past, then confirm notices."""

    booking: Gateway  # on a clock a fortnight back: the rules accept only future bookings
    now: Gateway
    rng: random.Random
    noticed: dict[str, str] = field(default_factory=dict)  # order id -> case number
    attended: dict[str, str] = field(default_factory=dict)
    owed: int = 0  # notices not yet driven for want of open cases
    seconds: float = 0.0  # spent on staff work

    def drive(self, notices: int, attendances: int) -> None:
        began = time.monotonic()
        try:
            self._drive(notices, attendances)
        finally:
            self.seconds += time.monotonic() - began

    def _drive(self, notices: int, attendances: int) -> None:
        self.owed += notices
        with self.now.session() as session:
            open_cases = session.execute(
                select(Case.order_id, Case.number).where(Case.status == "awaiting_summons")
            ).all()
        fresh = sorted((o, n) for o, n in open_cases if o not in self.noticed and o not in self.attended)
        picked = self.rng.sample(fresh, min(len(fresh), self.owed + attendances))
        notice_now, attend_now = picked[: self.owed], picked[self.owed :]
        if not picked:
            return
        booked_at = self.booking.clock.now()
        meeting = local_today(booked_at) + timedelta(days=7)
        with self.booking.session() as session:
            for _, number in picked:
                perform(
                    self.booking,
                    session,
                    svc.get_case(session, number),
                    Command("summoned", on=meeting),
                    ACTOR,
                )
        with self.now.session() as session:
            for _, number in notice_now:
                case = svc.get_case(session, number)
                perform(self.now, session, case, Command("no-show", on=meeting), ACTOR)
                perform(self.now, session, case, Command("send-notice"), ACTOR)
            for _, number in attend_now:
                perform(
                    self.now, session, svc.get_case(session, number), Command("attended", on=meeting), ACTOR
                )
        self.noticed.update(notice_now)
        self.attended.update(attend_now)
        self.owed -= len(notice_now)


# Killing and finishing ------------------------------------------------------------------


class Killer:
    """Kills one of the two instances at a time and restarts it in its slot."""

    def __init__(self, harness: Harness, paths: SharedPaths, runs: list[Run]) -> None:
        self.harness, self.paths, self.runs = harness, paths, runs
        self.tails = [Tail(run) for run in runs]
        self.record = KillLog()

    def kill(self, slot: int, when: str, delay: float) -> None:
        run, tail = self.runs[slot], self.tails[slot]
        was_poller = owned_by(self.paths.poll_owner(), run.proc.pid)
        self.harness.kill(run)
        lived = time.monotonic() - run.started
        if READY not in run.log.read_bytes():
            when = "startup"
        orders_left = self.paths.waiting() > 0
        self.record.crashes.kills.append(
            Kill(
                len(self.record.crashes.kills),
                when,
                delay,
                progressed=tail.count() > 0,
                work_left=orders_left or self.paths.pending() > 0,
                mid_send=self.paths.held_by(run.proc.pid),
                lived=lived,
            )
        )
        self.record.during_intake += orders_left
        self.record.of_poller += orders_left and was_poller
        self.runs[slot] = self.harness.start()
        self.tails[slot] = Tail(self.runs[slot])


def _kill_rounds(
    killer: Killer, rng: random.Random, staff: Staff, repeats: dict[int, list[tuple[str, bytes]]]
) -> KillLog:
    """Kill one of the two ``KILLS`` times and restart it; staff work and files arrive between.

    The victim is, while orders wait, often the instance holding the poll lease (so
    intake itself is interrupted and handed over), else either. The moment, from when
    the victim is running: after a while (0.2 to 2.5 s), or just after its k-th next
    intake or delivery line (k from 1 to 10, then 0 to 50 ms more), which lands inside
    the handling of the next item. Now and then the restarted instance is killed
    again in its first 0.05 to 1.5 s (start-up, schema check, the first poll).
    """
    paths, runs = killer.paths, killer.runs
    for i in range(KILLS):
        for name, data in repeats.get(i, []):
            drop_file(paths.inbox, name, data)
        staff.drive(NOTICES_PER_KILL, 1 if i % ATTENDED_EVERY == 0 else 0)
        poller = paths.poll_owner()
        holder = [n for n, run in enumerate(runs) if owned_by(poller, run.proc.pid)]
        busy_poller = holder and paths.waiting() and rng.random() < 0.5
        victim = holder[0] if busy_poller else rng.randrange(len(runs))
        if not killer.tails[victim].is_ready() and killer.tails[1 - victim].is_ready():
            victim = 1 - victim  # the other one is still starting: no need to wait for it
        killer.harness.wait_ready(runs[victim])
        if rng.random() < 0.4:
            when, delay = "working", rng.uniform(0.2, 2.5)
            time.sleep(delay)
        else:
            count, delay = rng.randint(1, 10), rng.uniform(0.0, 0.05)
            when = f"after event {count}" if killer.tails[victim].wait(count, timeout=3.0) else "idle"
            time.sleep(delay)
        killer.kill(victim, when, delay)
        if rng.random() < 0.15:
            delay = rng.uniform(0.05, 1.5)
            time.sleep(max(0.0, runs[victim].started + delay - time.monotonic()))
            killer.kill(victim, "early", delay)
    return killer.record


def _run_to_completion(harness: Harness, paths: SharedPaths, runs: list[Run], staff: Staff) -> None:
    """Both instances finish the work (leases of killed sends expire), then stop on SIGTERM."""
    for run in runs:
        harness.wait_ready(run)
    deadline = time.monotonic() + FINISH_TIMEOUT
    while staff.owed:  # notices owed for want of open cases while intake was behind
        staff.drive(0, 0)
        if time.monotonic() > deadline:
            pytest.fail(f"{staff.owed} notices could not be driven: no open case")
        time.sleep(0.1)

    def done() -> bool:
        sent = paths.scalar("SELECT count(*) FROM notices WHERE status = 'sent'")
        return paths.waiting() == 0 and paths.pending() == 0 and sent == len(staff.noticed)

    # However slow the machine, work goes on: fail only when it stops moving.
    progress, moved = paths.progress(), time.monotonic()
    while not done():
        died = [run.log.name for run in runs if run.proc.poll() is not None]
        if (now_at := paths.progress()) != progress:
            progress, moved = now_at, time.monotonic()
        if died or time.monotonic() - moved > STALL_TIMEOUT:
            for run in runs:
                if run.proc.poll() is None:
                    harness.stop(run)
            pytest.fail(
                f"work not finished (died: {died}): {paths.waiting()} in inbox, "
                f"{paths.pending()} pending in outbox, last progress "
                f"{time.monotonic() - moved:.0f} s ago"
            )
        time.sleep(0.1)
    codes = [harness.stop(run) for run in runs]
    assert codes == [0, 0], [run.log.read_text(errors="replace")[-3000:] for run in runs]


# The test ---------------------------------------------------------------------------------


@pytest.fixture
def shared_database() -> Iterator[str]:
    yield from _postgres_database()


def test_two_gateways_one_killed_again_and_again_take_each_order_and_send_each_notice_once(
    tmp_path: Path, shared_database: str
) -> None:
    seed = int(os.environ.get(SEED_VARIABLE) or random.SystemRandom().randrange(2**32))
    try:
        _two_instances(tmp_path, shared_database, seed)
    except BaseException:
        print(f"two-instance test seed: {seed} (repeat with {SEED_VARIABLE}={seed})")
        raise


def _two_instances(tmp_path: Path, url: str, seed: int) -> None:
    rng = random.Random(seed)
    started = time.monotonic()
    root = tmp_path / "gw"
    # Random kills are not a poison message: do not set any message aside for them.
    config = write_config(root, database=url, extra_gateway="max_intake_attempts = 1000")
    tune(config, TUNING)
    open_gateway(load_settings(config), migrate=True).close()
    logs = tmp_path / "logs"
    logs.mkdir()
    harness = ModuleHarness(config, logs, pycache=tmp_path / "pycache")
    warming = harness.warm_up()
    engine = create_engine(url, pool_size=2)
    paths = SharedPaths(root, engine)
    paths.inbox.mkdir(parents=True, exist_ok=True)

    orders = make_orders(rng)
    for i, order in enumerate(orders):
        drop_file(paths.inbox, f"ordre-{i:03d}.xml", order.data)
    repeats = late_repeats(orders)

    fortnight_ago = SystemClock().now() - timedelta(days=14)
    booking = open_gateway(load_settings(config), clock=SimulatedClock(fortnight_ago))
    staff_gw = open_gateway(load_settings(config))
    staff = Staff(booking, staff_gw, rng)
    assert warming.wait(timeout=120) == 0
    # One after the other: two first starts at the same moment race to insert the
    # instance lease row, and the loser exits 70 (UniqueViolation on pk_leases). Once
    # the row exists (a SIGKILL never removes it), restarts take it over by UPDATE.
    first = harness.start()
    harness.wait_ready(first)
    killer = Killer(harness, paths, [first, harness.start()])
    try:
        kills = _kill_rounds(killer, rng, staff, repeats)
        killed_until = time.monotonic() - started
        _run_to_completion(harness, paths, killer.runs, staff)
    finally:
        for run in killer.runs:
            if run.proc.poll() is None:
                harness.kill(run)
        booking.close()
        staff_gw.close()
        engine.dispose()
    print(
        f"seed {seed}: {kills.summary()}; {len(staff.noticed)} notices, {len(staff.attended)} attended "
        f"({staff.seconds:.1f} s of staff work); {harness.runs} processes in "
        f"{time.monotonic() - started:.1f} s (kills until {killed_until:.1f} s)"
    )

    # The kills must have hit work in progress, or this test proves nothing.
    assert len(kills.crashes.kills) >= 20
    assert kills.during_intake >= 8, kills.summary()
    assert kills.of_poller >= 3, kills.summary()
    assert kills.crashes.interrupted >= 10, kills.summary()
    assert kills.crashes.mid_send >= 1, f"no kill landed between claim and receipt: {kills.summary()}"

    with gateway_of(config) as gw, gw.session() as session:
        all_cases = session.scalars(select(Case)).all()
        notices = session.scalars(select(Notice)).all()
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        counts = {
            "orders": len(session.scalars(select(OrderRecord.id)).all()),
            "quarantine": len(session.scalars(select(QuarantineEntry.id)).all()),
            "attempts": len(session.scalars(select(IntakeAttempt.external_id)).all()),
        }
    _check_cases(all_cases, orders, staff, counts, paths, repeats)
    _check_notices(all_cases, notices, items, staff)
    _check_spool(paths, notices, items, all_cases)
    _check_logs(logs, items, orders)


# The end state ----------------------------------------------------------------------------


def _check_cases(
    all_cases: list[Case],
    orders: list[SentOrder],
    staff: Staff,
    counts: dict[str, int],
    paths: SharedPaths,
    repeats: dict[int, list[tuple[str, bytes]]],
) -> None:
    by_order = Counter(c.order_id for c in all_cases)
    assert set(by_order) == {o.order_id for o in orders}, "an order was lost (or a stranger appeared)"
    assert [o for o, n in by_order.items() if n > 1] == [], "a case was duplicated"
    assert len(all_cases) == ORDERS
    assert len({c.number for c in all_cases}) == ORDERS
    assert counts == {"orders": ORDERS, "quarantine": 0, "attempts": 0}
    assert paths.waiting() == 0
    distinct = {o.data for o in orders} | {data for files in repeats.values() for _, data in files}
    assert paths.scalar("SELECT count(*) FROM inbound_messages") == len(distinct)
    status = {c.order_id: c for c in all_cases}
    assert {status[o].status for o in staff.noticed} == {"notified"}
    for order_id in staff.attended:
        assert (status[order_id].status, status[order_id].notice_state) == ("fulfilled", "none")
    untouched = set(status) - set(staff.noticed) - set(staff.attended)
    assert {status[o].status for o in untouched} == {"awaiting_summons"}


def _check_notices(
    all_cases: list[Case], notices: list[Notice], items: list[OutboxItem], staff: Staff
) -> None:
    case_of = {c.id: c for c in all_cases}
    # Every outbox row delivered: nothing pending, dead or cancelled in this story.
    assert Counter(i.status for i in items) == {"sent": len(items)}
    per_case = Counter(case_of[n.case_id].order_id for n in notices)
    assert set(per_case) == set(staff.noticed) and max(per_case.values()) == 1
    assert {n.status for n in notices} == {"sent"}
    assert len({n.message_id for n in notices}) == len(notices)
    notice_items = [i for i in items if i.kind == "notice"]
    assert sorted(i.key for i in notice_items) == sorted(f"notice:{n.message_id}" for n in notices)


def _check_spool(
    paths: SharedPaths, notices: list[Notice], items: list[OutboxItem], all_cases: list[Case]
) -> None:
    case_of = {c.id: c for c in all_cases}
    notice_items = [i for i in items if i.kind == "notice"]
    mail_items = [i for i in items if i.kind != "notice"]
    xml_files = sorted(p.name for p in paths.outbox.glob("*.xml"))
    assert xml_files == sorted(f"{safe_name(i.key)}.xml" for i in notice_items)
    for suffix in (".txt", ".json"):
        assert sorted(p.stem for p in paths.outbox.glob(f"*{suffix}")) == sorted(
            Path(n).stem for n in xml_files
        )
    seen: Counter[str] = Counter()
    for path in paths.outbox.glob("*.xml"):
        doc = etree.fromstring(path.read_bytes())
        message_id = doc.findtext(f"{{{NOTICE_NS}}}MeldingId")
        assert message_id is not None
        seen[message_id] += 1
        notice = next(n for n in notices if n.message_id == message_id)
        assert doc.findtext(f"{{{NOTICE_NS}}}GjelderOrdreId") == case_of[notice.case_id].order_id
    assert set(seen) == {n.message_id for n in notices}
    assert max(seen.values()) == 1, "a notice was delivered twice"
    assert sorted(p.name for p in paths.mail.glob("*.eml")) == sorted(
        f"{safe_name(i.key)}.eml" for i in mail_items
    )
    # One durable marker per delivery, and no temporary file anywhere.
    delivered = paths.root / "spool" / ".delivered"
    assert sorted(p.name for p in delivered.iterdir()) == sorted(
        [*xml_files, *(f"{safe_name(i.key)}.eml" for i in mail_items)]
    )
    leftovers = [
        str(p.relative_to(paths.root))
        for folder in (paths.inbox, paths.outbox, paths.mail, delivered)
        for p in folder.iterdir()
        if p.name.startswith(".") or p.name.endswith((".tmp", ".part"))
    ]
    assert leftovers == [], "temporary files left behind"


def _check_logs(logs: Path, items: list[OutboxItem], orders: list[SentOrder]) -> None:
    """Per outbox row the channel wrote it fresh once, across both instances' runs."""
    fresh: Counter[int] = Counter()
    repeated: Counter[int] = Counter()
    texts = [log.read_bytes() for log in sorted(logs.glob("daemon-*.log"))]
    for data in texts:
        for match in DELIVERED.finditer(data):
            (repeated if match.group(3) else fresh)[int(match.group(1))] += 1
    attempts = {i.id: i.attempts for i in items}
    assert [k for k, n in fresh.items() if n > 1] == [], "an outbox row was written twice"
    assert all(attempts[k] >= 2 for k in repeated), "a duplicate receipt without a retry"
    assert set(fresh) | set(repeated) == set(attempts)
    everything = b"".join(texts)
    assert not [o for o in orders if o.national_id.encode() in everything], "identity number in a log"
    print(
        f"{sum(repeated.values())} duplicate receipt(s), "
        f"{sum(a > 1 for a in attempts.values())} row(s) sent again after a kill"
    )
