"""Benchmarks of the gateway on one machine, in one run, on the same data.

Usage::

    .venv/bin/python benchmarks/bench.py [--orders N] [--cases N] [--idle-seconds S]
                                         [--repeats R] [--dir PATH] [--markdown]

Three questions, because the volume is small and the process runs for years:

a. How far is intake from the bare floor? Orders per second through the real
   ``gateway.intake.pipeline.process`` (SQLite file, migrated, encryption, one transaction per
   message) against the same bytes parsed and XSD-validated by lxml plus the same
   number of rows inserted with one ``executemany``. Also, to show where the time
   goes: the safe reader alone, intake with ``synchronous=OFF`` (what the fsyncs
   cost), and a profile of one intake run grouped by cause.
b. How long does one reminder evaluation take over 100,000 open cases (the query
   alone, the first tick that enqueues what is due, and the steady-state tick)?
c. What does the idle daemon (``russak init`` defaults: poll and tick every 60 s)
   cost in CPU and resident memory?

Every timing is the median of ``--repeats`` runs, since a 2-core machine is noisy.
This is a script, not a test: it asserts only that the work it timed really happened.
Identity numbers are synthetic (month + 80).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import platform
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' factories live beside the package

import sqlalchemy  # noqa: E402
from lxml import etree  # noqa: E402
from sqlalchemy import event, func, insert, select  # noqa: E402

from connectors.spool.inbox import drop_file  # noqa: E402
from gateway.app import open_gateway  # noqa: E402
from gateway.clock import OSLO, SimulatedClock, local_today  # noqa: E402
from gateway.config import load_settings  # noqa: E402
from gateway.context import Gateway  # noqa: E402
from gateway.intake import batch  # noqa: E402
from gateway.intake import orders as intake_orders  # noqa: E402
from gateway.intake import pipeline as intake  # noqa: E402
from gateway.messages.orders import parse_order  # noqa: E402
from gateway.models import Case, Meeting, Notice, OrderRecord, Summons, Unit  # noqa: E402
from gateway.ops import memory, steps  # noqa: E402
from gateway.ports import RawMessage  # noqa: E402
from gateway.privacy import Cipher  # noqa: E402
from gateway.staff import digest, reminders  # noqa: E402
from schemas import ORDER_NS, ORDER_XSD  # noqa: E402
from tests.factories import UNIT_ORG, fnr, order_xml, write_config  # noqa: E402

# A Monday morning in Oslo (09:00), a working day after the digest time: a normal tick.
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
READY = b"russak-gateway running"


@dataclass
class Row:
    section: str
    measure: str
    value: str


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, measure: str, value: str) -> None:
        self.rows.append(Row(section, measure, value))
        print(f"bench: {measure}: {value}", file=sys.stderr, flush=True)

    def table(self) -> str:
        width = max(len(r.measure) for r in self.rows)
        lines, section = [], ""
        for r in self.rows:
            if r.section != section:
                section = r.section
                lines.append(f"\n{section}")
            lines.append(f"  {r.measure:<{width}}  {r.value}")
        return "\n".join(lines).lstrip("\n")

    def markdown(self) -> str:
        lines = ["| part | measure | median |", "|---|---|---|"]
        section = ""
        for r in self.rows:
            lines.append(f"| {r.section if r.section != section else ''} | {r.measure} | {r.value} |")
            section = r.section
        return "\n".join(lines)


def median_time(repeats: int, setup: Callable[[], Any], work: Callable[[Any], None]) -> float:
    """Median wall time of ``work(setup())``; setup and teardown are not timed."""
    times = []
    for _ in range(repeats):
        state = setup()
        try:
            start = time.perf_counter()
            work(state)
            times.append(time.perf_counter() - start)
        finally:
            close = getattr(state, "close", None)
            if callable(close):
                close()
    return statistics.median(times)


@contextlib.contextmanager
def scratch(base: Path | None) -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="russak-bench-", dir=base) as name:
        yield Path(name)


# a. Intake against the floor -----------------------------------------------------------


def make_orders(n: int) -> list[bytes]:
    """``n`` valid orders for ``n`` different (synthetic) people."""
    if n > 20_000:
        raise SystemExit("--orders: at most 20000 distinct synthetic people here")
    orders = []
    for i in range(n):
        birth = date(1950 + i // 336, i % 12 + 1, (i // 12) % 28 + 1)
        orders.append(order_xml(national_id=fnr(birth), birth=birth, case_reference=str(30_000_000 + i)))
    return orders


@dataclass
class IntakeRun:
    directory: contextlib.ExitStack
    gw: Gateway
    messages: list[RawMessage]

    def close(self) -> None:
        self.gw.close()
        self.directory.close()


def intake_setup(orders: list[bytes], base: Path | None, *, fsync: bool = True) -> Callable[[], IntakeRun]:
    def setup() -> IntakeRun:
        stack = contextlib.ExitStack()
        directory = stack.enter_context(scratch(base))
        settings = load_settings(write_config(directory))
        gw = open_gateway(settings, clock=SimulatedClock(NOW), migrate=True)
        if not fsync:

            def _no_sync(dbapi_conn: Any, _record: Any) -> None:
                dbapi_conn.execute("PRAGMA synchronous=OFF")

            event.listen(gw.engine, "connect", _no_sync)  # runs after the gateway's own
            gw.engine.dispose()
        messages = [
            RawMessage(
                channel="spool",
                external_id="sha256:" + hashlib.sha256(data).hexdigest(),
                content=data,
                kind="xml",
                received_at=NOW,
                metadata={"filename": f"ordre-{i}.xml"},
            )
            for i, data in enumerate(orders)
        ]
        return IntakeRun(stack, gw, messages)

    return setup


def intake_work(run: IntakeRun) -> None:
    outcomes = {intake.process(run.gw, m).outcome for m in run.messages}
    assert outcomes == {"case"}, outcomes


@dataclass
class FloorRun:
    directory: contextlib.ExitStack
    conn: sqlite3.Connection
    schema: etree.XMLSchema
    orders: list[bytes]

    def close(self) -> None:
        self.conn.close()
        self.directory.close()


_FLOOR_FIELDS = (
    "OrdreId",
    "Sendt",
    "Avsender/o:Organisasjonsnummer",
    "Mottaker/o:Kommunenummer",
    "Straffesak/o:Saksnummer",
    "Straffesak/o:Reaksjon",
    "Straffesak/o:Avgjort",
    "Straffesak/o:ProvetidTil",
    "Person/o:Fodselsnummer",
    "Person/o:Fornavn",
    "Person/o:Etternavn",
    "Person/o:Fodselsdato",
)


def floor_setup(orders: list[bytes], base: Path | None) -> Callable[[], FloorRun]:
    def setup() -> FloorRun:
        stack = contextlib.ExitStack()
        directory = stack.enter_context(scratch(base))
        conn = sqlite3.connect(directory / "floor.db")
        columns = ", ".join(f"c{i} TEXT" for i in range(len(_FLOOR_FIELDS)))
        conn.execute(f"CREATE TABLE orders (id INTEGER PRIMARY KEY, {columns}, document BLOB)")
        conn.commit()
        schema = etree.XMLSchema(etree.parse(str(ORDER_XSD)))
        return FloorRun(stack, conn, schema, orders)

    return setup


def floor_work(run: FloorRun) -> None:
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    ns = {"o": ORDER_NS}
    paths = [etree.XPath("o:" + f, namespaces=ns) for f in _FLOOR_FIELDS]
    rows = []
    for data in run.orders:
        root = etree.fromstring(data, parser)
        run.schema.assertValid(root)
        values = []
        for path in paths:
            found = path(root)
            first = found[0] if isinstance(found, list) and found else None
            values.append(first.text if isinstance(first, etree._Element) else None)
        rows.append((*values, data))
    marks = ", ".join("?" * (len(_FLOOR_FIELDS) + 1))
    run.conn.executemany(f"INSERT INTO orders VALUES (NULL, {marks})", rows)
    run.conn.commit()
    assert run.conn.execute("SELECT count(*) FROM orders").fetchone()[0] == len(run.orders)


def reader_only(orders: list[bytes]) -> None:
    for data in orders:
        parse_order(data)


@dataclass
class Anatomy:
    """Counters of one instrumented intake run, per order."""

    orders: int
    seconds: float = 0.0
    statements: int = 0
    commits: int = 0
    commit_seconds: float = 0.0
    crypto_calls: int = 0
    crypto_seconds: float = 0.0

    def per_order(self, value: float) -> float:
        return value / self.orders


def timed(work: Callable[..., Any], seen: Callable[[float], None]) -> Callable[..., Any]:
    """``work`` itself, reporting the seconds of every call to ``seen``."""

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        try:
            return work(*args, **kwargs)
        finally:
            seen(time.perf_counter() - start)

    return wrapper


@contextlib.contextmanager
def timed_cipher(seen: Callable[[float], None]) -> Iterator[None]:
    """Report the seconds of every ``Cipher.encrypt`` / ``decrypt`` call while inside."""
    plain_encrypt, plain_decrypt = Cipher.encrypt, Cipher.decrypt
    Cipher.encrypt, Cipher.decrypt = timed(plain_encrypt, seen), timed(plain_decrypt, seen)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Cipher.encrypt, Cipher.decrypt = plain_encrypt, plain_decrypt  # type: ignore[method-assign]


def anatomy_of_intake(setup: Callable[[], IntakeRun]) -> Anatomy:
    """Count statements and transactions and time commits and encryption in one run.

    Wrappers, not a profiler: cProfile inflates pure-Python time several-fold and
    would misplace the share of the C-level work (fsync, AES).
    """
    run = setup()
    found = Anatomy(len(run.messages))
    dialect = run.gw.engine.dialect

    def commit(seconds: float) -> None:
        found.commit_seconds += seconds
        found.commits += 1

    def crypto(seconds: float) -> None:
        found.crypto_seconds += seconds
        found.crypto_calls += 1

    def count(*_args: Any) -> None:
        found.statements += 1

    event.listen(run.gw.engine, "before_cursor_execute", count)
    dialect.do_commit = timed(dialect.do_commit, commit)  # type: ignore[method-assign]
    try:
        with timed_cipher(crypto):
            start = time.perf_counter()
            intake_work(run)
            found.seconds = time.perf_counter() - start
    finally:
        run.close()
    return found


def bench_intake(report: Report, n: int, repeats: int, base: Path | None) -> None:
    section = f"a. intake, {n} orders, SQLite file"
    orders = make_orders(n)
    real = median_time(repeats, intake_setup(orders, base), intake_work)
    floor = median_time(repeats, floor_setup(orders, base), floor_work)
    no_sync = median_time(repeats, intake_setup(orders, base, fsync=False), intake_work)
    reader = median_time(repeats, lambda: None, lambda _: reader_only(orders))
    report.add(
        section,
        "real intake (gateway.intake.pipeline.process)",
        f"{n / real:,.0f} orders/s ({1000 * real / n:.1f} ms each)",
    )
    report.add(
        section,
        "floor (lxml parse + XSD, one executemany)",
        f"{n / floor:,.0f} orders/s ({1000 * floor / n:.2f} ms each)",
    )
    report.add(section, "ratio floor / real", f"{real / floor:,.0f}x")
    report.add(section, "diagnostic: safe reader alone (parse_order)", f"{n / reader:,.0f} orders/s")
    report.add(section, "diagnostic: real intake with synchronous=OFF", f"{n / no_sync:,.0f} orders/s")
    parts = anatomy_of_intake(intake_setup(orders, base))
    each = parts.per_order
    report.add(
        section,
        "anatomy of one order (instrumented run)",
        f"{1000 * each(parts.seconds):.1f} ms: {each(parts.statements):.0f} SQL statements, "
        f"{each(parts.commits):.0f} commit(s) taking {1000 * each(parts.commit_seconds):.1f} ms, "
        f"{each(parts.crypto_calls):.0f} Fernet calls taking {1000 * each(parts.crypto_seconds):.2f} ms",
    )


# a2. A backlog through the spool channel ---------------------------------------------


@dataclass
class BacklogRun:
    directory: contextlib.ExitStack
    gw: Gateway
    inbox: Path
    count: int

    def close(self) -> None:
        self.gw.close()
        self.directory.close()


def backlog_setup(orders: list[bytes], base: Path | None) -> Callable[[], BacklogRun]:
    """A migrated site whose spool inbox holds ``orders`` as files (dropped, untimed)."""

    def setup() -> BacklogRun:
        stack = contextlib.ExitStack()
        directory = stack.enter_context(scratch(base))
        gw = open_gateway(load_settings(write_config(directory)), clock=SimulatedClock(NOW), migrate=True)
        inbox = Path(gw.channel("spool").inbox)
        for i, data in enumerate(orders):
            drop_file(inbox, f"ordre-{i:05d}.xml", data)
        return BacklogRun(stack, gw, inbox, len(orders))

    return setup


def backlog_work(run: BacklogRun) -> None:
    """Poll the spool channel until its inbox is empty: read, take in, commit, acknowledge."""
    channel = run.gw.channel("spool")
    taken = 0
    for _ in range(10):
        taken += steps.poll_channel(run.gw, channel, steps.CycleReport()).taken
        if taken >= run.count:
            break
    assert taken == run.count, (taken, run.count)
    assert not any(run.inbox.glob("*.xml"))


@dataclass
class FloorFiles:
    floor: FloorRun
    folder: Path

    def close(self) -> None:
        self.floor.close()


def backlog_floor_setup(orders: list[bytes], base: Path | None) -> Callable[[], FloorFiles]:
    """The floor's table, and the same orders as files in a folder beside it."""
    plain = floor_setup(orders, base)

    def setup() -> FloorFiles:
        run = plain()
        folder = Path(run.conn.execute("PRAGMA database_list").fetchone()[2]).parent / "inbox"
        folder.mkdir()
        for i, data in enumerate(orders):
            (folder / f"ordre-{i:05d}.xml").write_bytes(data)
        return FloorFiles(run, folder)

    return setup


def backlog_floor_work(run: FloorFiles) -> None:
    """The floor with the files: read each file back, then parse, validate, one executemany."""
    run.floor.orders = [path.read_bytes() for path in sorted(run.folder.iterdir())]
    floor_work(run.floor)


@dataclass
class Unskippable:
    """Seconds one instrumented backlog run spent in the work no order may skip."""

    orders: int
    seconds: float = 0.0
    reader: float = 0.0
    crypto: float = 0.0
    crypto_calls: int = 0
    acknowledge: float = 0.0

    @property
    def total(self) -> float:
        return self.reader + self.crypto + self.acknowledge


def unskippable_work(setup: Callable[[], BacklogRun]) -> Unskippable:
    """Time, inside one real poll of the backlog, the parts the rules require of every order.

    The safe reader (``parse_order``: byte checks, hardened parse, XSD, the rules XSD
    cannot express), the field encryption (the stored original, the order payload, the
    person's fields, the staff alert), and the spool's acknowledgement (which reads the
    file again and removes it only if it is still the committed message). No SQL is in
    this sum, so it is a lower bound of any intake that keeps those rules: if it alone is
    more than 4x the floor, no change to the SQL can bring intake within 4x.
    """
    run = setup()
    found = Unskippable(run.count)
    channel = run.gw.channel("spool")

    def reader(seconds: float) -> None:
        found.reader += seconds

    def acknowledge(seconds: float) -> None:
        found.acknowledge += seconds

    def crypto(seconds: float) -> None:
        found.crypto += seconds
        found.crypto_calls += 1

    intake_orders.parse_order = timed(parse_order, reader)  # type: ignore[attr-defined]
    channel.acknowledge = timed(channel.acknowledge, acknowledge)
    try:
        with timed_cipher(crypto):
            start = time.perf_counter()
            backlog_work(run)
            found.seconds = time.perf_counter() - start
    finally:
        intake_orders.parse_order = parse_order  # type: ignore[attr-defined]
        run.close()
    return found


def bench_backlog(report: Report, n: int, repeats: int, base: Path | None) -> None:
    section = f"a2. a backlog of {n:,} orders through the spool channel, SQLite file"
    orders = make_orders(n)
    real = median_time(repeats, backlog_setup(orders, base), backlog_work)
    floor = median_time(repeats, backlog_floor_setup(orders, base), backlog_floor_work)
    plain_batch = batch.MAX_MESSAGES
    batch.MAX_MESSAGES = 1  # what the gateway did before batches: a transaction per message
    try:
        single = median_time(max(1, repeats // 2), backlog_setup(orders, base), backlog_work)
    finally:
        batch.MAX_MESSAGES = plain_batch
    report.add(
        section,
        "real poll (scan, read, intake in batches, commit, acknowledge)",
        f"{n / real:,.0f} orders/s ({real:.1f} s in all, {1000 * real / n:.2f} ms each)",
    )
    report.add(
        section,
        "floor (read the files, lxml parse + XSD, one executemany)",
        f"{n / floor:,.0f} orders/s ({floor:.2f} s in all)",
    )
    report.add(section, "ratio real / floor", f"{real / floor:,.1f}x")
    report.add(
        section,
        "diagnostic: the same poll, one transaction per message",
        f"{n / single:,.0f} orders/s ({single:.1f} s; batches are {single / real:.1f}x faster)",
    )
    must = unskippable_work(backlog_setup(orders, base))
    report.add(
        section,
        "work no order may skip (instrumented run): reader + encryption + acknowledgement",
        f"{1000 * must.reader / n:.3f} + {1000 * must.crypto / n:.3f} "
        f"({must.crypto_calls / n:.0f} Fernet calls) + {1000 * must.acknowledge / n:.3f} "
        f"= {1000 * must.total / n:.3f} ms each, "
        f"{must.total / floor:.1f}x the floor, {100 * must.total / must.seconds:.0f} % of that run",
    )


# b. Reminders over many open cases ------------------------------------------------------


def bulk_cases(gw: Gateway, n: int, seed: int = 7) -> None:
    """``n`` open cases with a realistic spread, inserted with Core executemany.

    Most open cases are waiting out their condition period after attending
    (fulfilled) or after a notice (notified); a few are new, summoned or waiting
    for a notice to be confirmed. Only those near a deadline are due.
    """
    rng = random.Random(seed)
    today = local_today(NOW)
    unit_id = 1
    mix = [
        ("fulfilled", 0.62),
        ("notified", 0.20),
        ("summoned", 0.12),
        ("awaiting_summons", 0.04),
        ("noncompliant", 0.019),
        ("needs_registration", 0.001),
    ]
    statuses = rng.choices([s for s, _ in mix], weights=[w for _, w in mix], k=n)
    cases: list[dict[str, Any]] = []
    meetings: list[dict[str, Any]] = []
    summonses: list[dict[str, Any]] = []
    notices: list[dict[str, Any]] = []
    for i, status in enumerate(statuses, start=1):
        age = {
            "awaiting_summons": rng.randint(0, 15),
            "needs_registration": rng.randint(0, 5),
            "summoned": rng.randint(5, 60),
            "noncompliant": rng.randint(20, 120),
        }.get(status, rng.randint(30, 725))
        created = NOW - timedelta(days=age, minutes=rng.randint(0, 600))
        opened = created.astimezone(OSLO).date()
        registered = status != "needs_registration"
        cases.append(
            {
                "id": i,
                "number": f"RUS-{opened.year}-{i:06d}",
                "unit_id": unit_id,
                "status": status,
                "created_at": created,
                "updated_at": created,
                "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)) if registered else None,
                "sender_org_number": "921000006" if registered else None,
                "kommunenummer": "4601",
                "case_reference": str(40_000_000 + i) if registered else None,
                "reaction": "betinget_patalaunnlatelse" if registered else None,
                "decided_on": opened - timedelta(days=14),
                "condition_end": opened + timedelta(days=730) if registered else None,
                "attendance_deadline": opened + timedelta(days=90) if registered else None,
                "first_meeting_target": opened + timedelta(days=14),
                "minor": rng.random() < 0.1,
                "required_attendances": 1,
                "attendances": 1 if status in ("fulfilled",) else 0,
                "open_no_shows": [(opened + timedelta(days=10)).isoformat()]
                if status == "noncompliant"
                else [],
                "open_tests_missed": [],
                "notice_state": {"notified": "sent", "noncompliant": "draft"}.get(status, "none"),
            }
        )
        if status in ("summoned", "fulfilled", "notified", "noncompliant"):
            meeting_on = (
                today + timedelta(days=rng.randint(-2, 90))
                if status == "summoned"
                else opened + timedelta(days=10)
            )
            outcome = None if status == "summoned" else {"fulfilled": "attended"}.get(status, "no_show")
            meetings.append(
                {
                    "id": len(meetings) + 1,
                    "case_id": i,
                    "starts_on": meeting_on,
                    "outcome": outcome,
                    "outcome_on": None if outcome is None else meeting_on,
                }
            )
            summonses.append(
                {
                    "case_id": i,
                    "sent_on": opened + timedelta(days=2),
                    "channel": "brev",
                    "meeting_id": len(meetings),
                }
            )
        if status in ("noncompliant", "notified"):
            notices.append(
                {
                    "case_id": i,
                    "message_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    "status": "draft" if status == "noncompliant" else "sent",
                    "breaches": [{"type": "ikke_mott", "on": (opened + timedelta(days=10)).isoformat()}],
                    "created_at": created + timedelta(days=11),
                }
            )
    orders = [
        {
            "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "message_type": "endring",
            "refers_to": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "sent_at": NOW - timedelta(days=5),
        }
        for _ in range(10)
    ]
    with gw.engine.begin() as conn:
        conn.execute(
            insert(Unit), [{"id": unit_id, "code": "testdal", "name": "Testdal", "org_number": UNIT_ORG}]
        )
        conn.execute(insert(Case), cases)
        conn.execute(insert(Meeting), meetings)
        conn.execute(insert(Summons), summonses)
        conn.execute(insert(Notice), notices)
        conn.execute(insert(OrderRecord), orders)


def _rule_of(key: str) -> str:
    """``case:42:attendance-deadline:2026-12-03`` -> ``attendance-deadline``."""
    return key.split(":")[2]


def bench_reminders(report: Report, n: int, repeats: int, base: Path | None) -> None:
    section = f"b. reminders over {n:,} open cases"
    with scratch(base) as directory:
        clock = SimulatedClock(NOW)
        gw = open_gateway(load_settings(write_config(directory)), clock=clock, migrate=True)
        try:
            start = time.perf_counter()
            bulk_cases(gw, n)
            report.add(
                section,
                "bulk insert (Core executemany, one transaction)",
                f"{time.perf_counter() - start:.1f} s",
            )
            due: list[reminders.Due] = []

            def evaluate(_: None) -> None:
                nonlocal due
                with gw.session() as session:
                    due = reminders.due_reminders(gw, session, NOW)

            query = median_time(repeats, lambda: None, evaluate)
            report.add(
                section, "due_reminders (the query and rules)", f"{1000 * query:,.0f} ms, {len(due):,} due"
            )
            rules = Counter(_rule_of(d.key) for d in due)
            report.add(section, "due by rule", ", ".join(f"{k} {v:,}" for k, v in rules.most_common()))
            body = ""

            def render(_: None) -> None:
                nonlocal body
                with gw.session() as session:
                    body = digest.render_digest(gw, session, "testdal", local_today(NOW))

            rendering = median_time(repeats, lambda: None, render)
            report.add(
                section,
                "daily digest render (every status counted, 200 cases listed of each)",
                f"{1000 * rendering:,.0f} ms, {len(body.encode()) / 1024:,.0f} KiB",
            )
            peak, kept = memory_of(lambda: render(None))
            report.add(
                section,
                "daily digest render: RSS peak above the start, and kept after a heap trim",
                f"+{peak / 1024:,.1f} MiB, +{kept / 1024:,.1f} MiB",
            )
            start = time.perf_counter()
            first = reminders.tick(gw)
            first_time = time.perf_counter() - start
            assert first.reminders > 0
            report.add(
                section,
                "first tick (enqueues what is due + the day's digest)",
                f"{first_time:,.1f} s, {first.reminders:,} reminders, {first.digests} digest",
            )
            steady_reports: list[reminders.TickReport] = []
            steady = median_time(repeats, lambda: None, lambda _: steady_reports.append(reminders.tick(gw)))
            assert all(r.reminders == 0 and r.digests == 0 for r in steady_reports)
            report.add(section, "steady-state tick (nothing new)", f"{1000 * steady:,.0f} ms")
        finally:
            gw.close()


# c. The idle daemon ---------------------------------------------------------------------


def _russak() -> list[str]:
    script = Path(sys.executable).parent / "russak"
    return (
        [str(script)] if script.exists() else [sys.executable, "-c", "from gateway.cli import main; main()"]
    )


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime = int(fields[11]), int(fields[12])  # fields 14 and 15 of stat(5)
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def bench_idle(report: Report, seconds: float, settle: float, base: Path | None) -> None:
    section = f"c. idle daemon, russak init defaults (poll/tick 60 s), {seconds:.0f} s"
    env = {
        k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "JOURNAL_STREAM")
    }
    with scratch(base) as directory:
        subprocess.run(
            [*_russak(), "init", "--dir", str(directory / "gw")], check=True, capture_output=True, env=env
        )
        config = directory / "gw" / "russak.toml"
        log = directory / "daemon.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [*_russak(), "--config", str(config), "run"], stdout=handle, stderr=subprocess.STDOUT, env=env
            )
            try:
                spawned = time.monotonic()
                while READY not in log.read_bytes():
                    if proc.poll() is not None or time.monotonic() - spawned > 60:
                        raise SystemExit("daemon did not start:\n" + log.read_text(errors="replace"))
                    time.sleep(0.01)
                startup_cpu = _cpu_seconds(proc.pid)
                report.add(
                    section,
                    "startup to ready",
                    f"{time.monotonic() - spawned:.2f} s wall, {startup_cpu:.2f} s CPU",
                )
                time.sleep(settle)
                cpu0, rss0, wall0 = _cpu_seconds(proc.pid), _status_kib(proc.pid, "VmRSS"), time.monotonic()
                peak = rss0
                while time.monotonic() - wall0 < seconds:
                    time.sleep(min(1.0, max(0.0, seconds - (time.monotonic() - wall0))))
                    peak = max(peak, _status_kib(proc.pid, "VmRSS"))
                cpu1, rss1, wall1 = _cpu_seconds(proc.pid), _status_kib(proc.pid, "VmRSS"), time.monotonic()
                threads = _status_kib(proc.pid, "Threads")
            finally:
                proc.send_signal(signal.SIGTERM)
                code = proc.wait(timeout=60)
        assert code == 0, log.read_text(errors="replace")
    report.add(section, "CPU while idle", f"{100 * (cpu1 - cpu0) / (wall1 - wall0):.3f} % of one core")
    report.add(
        section,
        "resident memory (VmRSS) start -> end",
        f"{rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MiB (peak sampled {peak / 1024:.1f})",
    )
    report.add(section, "threads", str(threads))


# ------------------------------------------------------------------------------------


def _rss_kib() -> int:
    return _status_kib(os.getpid(), "VmRSS")


def memory_of(work: Callable[[], object]) -> tuple[int, int]:
    """KiB of RSS that ``work`` peaks at above where it started, and keeps after a trim.

    The heap is trimmed first (``gateway.ops.memory``, as the daemon does after every
    step) and the kernel's high-water mark reset (``/proc/self/clear_refs``), so
    ``VmHWM`` afterwards is this work's peak.
    """
    memory.release_free_heap()
    Path("/proc/self/clear_refs").write_text("5")
    start = _rss_kib()
    work()
    peak = _status_kib(os.getpid(), "VmHWM")
    memory.release_free_heap()
    return peak - start, _rss_kib() - start


def bench_soak(report: Report, days: int, base: Path | None) -> None:
    """A year of simulated days through the real daemon cycle, in this process.

    Each working day one order arrives in the spool inbox, earlier cases are summoned
    and attend (every fifth does not, and is notified), old cases are closed, and the
    daily purge runs. Memory is read after a 30-day warm-up and at the end: resident
    set size, and the number of objects the garbage collector tracks (a leak of
    Python objects shows there long before it shows in RSS).
    """
    import gc

    from connectors.spool import drop_file
    from gateway.cases import retention
    from gateway.domain.lifecycle import TransitionError
    from gateway.ops import daemon
    from gateway.staff.commands import Command, perform

    section = f"d. soak, {days} simulated days in one process"
    with scratch(base) as root:
        clock = SimulatedClock(NOW)
        gw = open_gateway(load_settings(write_config(root / "gw")), clock=clock, migrate=True)
        inbox = gw.channel("spool").inbox  # builds the channel, which makes its folders
        cycle_times: list[float] = []
        warm: tuple[int, int] | None = None
        middle: tuple[int, int] = (0, 0)
        try:
            for day in range(days):
                today = local_today(clock.now())
                if gw.calendar.is_working_day(today):
                    birth = date(1990, 1, 1) + timedelta(days=day)
                    drop_file(inbox, f"o{day}.xml", order_xml(first_name=f"P{day}", birth=birth))
                started = time.perf_counter()
                daemon.cycle(gw)
                cycle_times.append(time.perf_counter() - started)
                with gw.session() as session:
                    for case in session.scalars(
                        select(Case).where(Case.status.in_(("awaiting_summons", "summoned")))
                    ):
                        try:
                            if case.status == "awaiting_summons":
                                perform(
                                    gw,
                                    session,
                                    case,
                                    Command("summoned", on=today + timedelta(days=7)),
                                    "bench",
                                )
                            elif case.next_meeting_at and case.next_meeting_at.date() <= today:
                                verb = "no-show" if case.id % 5 == 0 else "attended"
                                perform(gw, session, case, Command(verb, on=today), "bench")
                        except TransitionError:
                            pass
                    for case in session.scalars(select(Case).where(Case.status == "noncompliant")):
                        with contextlib.suppress(TransitionError):
                            perform(gw, session, case, Command("send-notice"), "bench")
                    for case in session.scalars(
                        select(Case).where(Case.status.in_(("fulfilled", "notified")))
                    ):
                        if (today - case.created_at.date()).days > 60:
                            perform(gw, session, case, Command("close", reason="prøvetid ute"), "bench")
                retention.purge(gw)
                clock.advance(timedelta(days=1))
                if day == 30:
                    gc.collect()
                    warm = (_rss_kib(), len(gc.get_objects()))
                if day == days // 2:
                    gc.collect()
                    middle = (_rss_kib(), len(gc.get_objects()))
            gc.collect()
            end = (_rss_kib(), len(gc.get_objects()))
            with gw.session() as session:
                open_cases = session.scalar(select(func.count()).select_from(Case)) or 0
        finally:
            gw.close()
    assert warm is not None
    report.add(
        section,
        "cycle (poll + intake + tick + dispatch), median",
        f"{statistics.median(cycle_times) * 1000:.1f} ms",
    )
    report.add(section, "cases still stored at the end (purge after 90 days)", f"{open_cases}")
    report.add(
        section,
        f"resident memory after 30 days -> {days // 2} days -> end",
        f"{warm[0] / 1024:.1f} -> {middle[0] / 1024:.1f} -> {end[0] / 1024:.1f} MiB",
    )
    report.add(
        section,
        f"objects tracked by the GC after 30 days -> {days // 2} days -> end",
        f"{warm[1]:,} -> {middle[1]:,} -> {end[1]:,}",
    )


def machine() -> str:
    return (
        f"{os.cpu_count()} CPUs ({platform.machine()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"SQLAlchemy {sqlalchemy.__version__}, lxml {etree.__version__}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--orders", type=int, default=200, help="orders per intake run (default 200)")
    parser.add_argument(
        "--backlog", type=int, default=2000, help="orders in the spool backlog of part a2; 0 skips it"
    )
    parser.add_argument("--cases", type=int, default=100_000, help="open cases for the reminder run")
    parser.add_argument("--idle-seconds", type=float, default=60.0, help="idle window; 0 skips part c")
    parser.add_argument("--settle", type=float, default=5.0, help="seconds after ready before sampling")
    parser.add_argument("--repeats", type=int, default=5, help="runs per timing (median reported)")
    parser.add_argument("--dir", type=Path, default=None, help="where temporary databases go")
    parser.add_argument("--soak-days", type=int, default=365, help="simulated days for part d; 0 skips it")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    report = Report()
    print(f"bench: {machine()}", file=sys.stderr)
    if args.orders > 0:
        bench_intake(report, args.orders, args.repeats, args.dir)
    if args.backlog > 0:
        bench_backlog(report, args.backlog, max(1, min(args.repeats, 3)), args.dir)
    if args.cases > 0:
        bench_reminders(report, args.cases, args.repeats, args.dir)
    if args.idle_seconds > 0:
        bench_idle(report, args.idle_seconds, args.settle, args.dir)
    if args.soak_days > 0:
        bench_soak(report, args.soak_days, args.dir)
    print(machine())
    print(report.markdown() if args.markdown else report.table())
    return 0


if __name__ == "__main__":
    sys.exit(main())
