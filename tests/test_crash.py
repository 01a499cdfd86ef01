"""Crash test: SIGKILL the real daemon at random moments, many times, then count.

The gateway's promise is that a crash at any instant loses nothing and duplicates
nothing that matters. The only honest way to check that is to run the real
``russak run`` process on a real SQLite file and the real spool channel, kill it
with SIGKILL (no handler, no cleanup) while it takes in orders and while it sends
notices, restart it, and finally count what came out: one case per OrdreId, no
order left behind, and one notice file per MeldingId in the spool outbox (the
spool's duplicate receipt is the only way a resend may happen). A full run's
database file and logs must also hold no identity number in clear.

Kill timing is random (seeded; the seed is printed on failure and can be replayed
with ``RUSSAK_CRASH_SEED``); every assertion is about end state and is deterministic.
Work is fed in waves between restarts, so kills land while the daemon is busy.
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import date, timedelta
from email import policy
from email.parser import BytesParser
from pathlib import Path
from typing import IO

import pytest
from lxml import etree
from sqlalchemy import select

from connectors.spool import drop_file, safe_name
from gateway import cases as svc
from gateway.app import open_gateway
from gateway.clock import SimulatedClock, SystemClock, local_today
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.models import Case, Notice, OutboxItem
from gateway.ports import Clock
from gateway.staff.commands import Command, perform
from tests.factories import fnr, order_xml, write_config

pytestmark = pytest.mark.slow

NOTICE_NS = "urn:no:russak:melding:1"
READY = b"russak-gateway running"
ACTOR = "cli:crash-test"
ORDERS = 60  # distinct OrdreIds
ORDERS_PER_ROUND = 4
INTAKE_ROUNDS = 15
NOTICES = 32  # cases driven to a confirmed notice
ATTENDED = 6  # cases where the person attended: never a notice
DISPATCH_ROUNDS = 16
INTAKE_LINE = b'"message": "intake spool/'  # the JSON log line of one intake
DELIVERY_LINE = b") delivered via spool"
DELIVERED = re.compile(rb"outbox (\d+) \((\w+)\) delivered via spool( \(already delivered earlier\))?")


# The daemon as a child process -------------------------------------------------------


def russak_command() -> list[str]:
    """The installed console script next to this interpreter, else the module entry."""
    script = Path(sys.executable).parent / "russak"
    if script.exists():
        return [str(script)]
    found = shutil.which("russak")
    if found:
        return [found]
    return [sys.executable, "-c", "from gateway.cli import main; main()"]


def child_env() -> dict[str, str]:
    """The test's environment minus systemd's variables, so logs are JSON lines, not journald's."""
    env = dict(os.environ)
    for name in (
        "NOTIFY_SOCKET",
        "WATCHDOG_USEC",
        "WATCHDOG_PID",
        "JOURNAL_STREAM",
        "RUSSAK_CONFIG",
    ):
        env.pop(name, None)
    return env


@dataclass
class Run:
    proc: subprocess.Popen[bytes]
    log: Path
    handle: IO[bytes]
    started: float


@dataclass
class Harness:
    """Starts, kills and stops ``russak run``; every run's stderr goes to its own file."""

    config: Path
    logs: Path
    runs: int = 0

    def start(self) -> Run:
        self.runs += 1
        log = self.logs / f"daemon-{self.runs:03d}.log"
        handle = log.open("wb")
        proc = subprocess.Popen(
            [*russak_command(), "--config", str(self.config), "--log-level", "DEBUG", "run"],
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=self.config.parent,
            env=child_env(),
        )
        return Run(proc, log, handle, time.monotonic())

    def wait_ready(self, run: Run, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if READY in run.log.read_bytes():
                return
            if run.proc.poll() is not None:
                break
            time.sleep(0.005)
        pytest.fail(
            f"daemon did not start (exit {run.proc.poll()}):\n" + run.log.read_text(errors="replace")[-3000:]
        )

    def wait_for(self, run: Run, marker: bytes, count: int, timeout: float = 2.0) -> bool:
        """Until the ready run has logged ``marker`` ``count`` times; False if it did not."""
        self.wait_ready(run)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and run.proc.poll() is None:
            if run.log.read_bytes().count(marker) >= count:
                return True
            time.sleep(0.002)
        return False

    def kill(self, run: Run) -> None:
        run.proc.send_signal(signal.SIGKILL)
        run.proc.wait(timeout=30)
        run.handle.close()

    def stop(self, run: Run) -> int:
        run.proc.send_signal(signal.SIGTERM)
        try:
            code = run.proc.wait(timeout=30)
        finally:
            run.handle.close()
        return code

    def cli(self, *args: str) -> str:
        """One ``russak`` command; its output is kept with the logs (privacy check)."""
        done = subprocess.run(
            [*russak_command(), "--config", str(self.config), *args],
            capture_output=True,
            cwd=self.config.parent,
            env=child_env(),
            timeout=60,
            check=False,
        )
        self.runs += 1
        (self.logs / f"cli-{self.runs:03d}.log").write_bytes(done.stdout + done.stderr)
        assert done.returncode == 0, done.stderr.decode(errors="replace")
        return done.stdout.decode()


# Looking at the state from outside -----------------------------------------------------


@dataclass(frozen=True)
class Paths:
    root: Path

    @property
    def db(self) -> Path:
        return self.root / "russak.db"

    @property
    def inbox(self) -> Path:
        return self.root / "spool" / "inbox"

    @property
    def outbox(self) -> Path:
        return self.root / "spool" / "outbox"

    @property
    def mail(self) -> Path:
        return self.root / "spool" / "mail"

    def waiting(self) -> int:
        """Order files still in the inbox (not dot-files: those are never read)."""
        return len([p for p in self.inbox.glob("*") if not p.name.startswith(".")])

    def scalar(self, sql: str) -> int:
        """A count from the live database without taking its write lock."""
        if not self.db.exists():
            return 0
        try:
            with closing(sqlite3.connect(self.db, timeout=30)) as conn:
                row = conn.execute(sql).fetchone()
        except sqlite3.OperationalError:  # killed before the schema existed
            return 0
        return int(row[0]) if row else 0

    def pending(self) -> int:
        return self.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")

    def busy(self) -> bool:
        return self.waiting() > 0 or self.pending() > 0

    def progress(self) -> int:
        """Grows with every committed intake or delivery."""
        return self.scalar(
            "SELECT (SELECT count(*) FROM inbound_messages)"
            " + (SELECT count(*) FROM outbox WHERE status = 'sent')"
        )

    def held_by(self, pid: int) -> int:
        """Outbox rows a (dead) process had claimed but not recorded: killed mid-send."""
        return self.scalar(
            f"SELECT count(*) FROM outbox WHERE status = 'pending' AND lease_owner LIKE '%:{int(pid)}:%'"
        )


@dataclass(frozen=True)
class Kill:
    round: int
    when: str  # "startup" (from spawn), "working" (from ready), "after event k", "idle"
    delay: float
    progressed: bool  # the killed run committed something
    work_left: bool  # and there was still work to do when it died
    mid_send: int  # rows it had claimed and not recorded
    lived: float  # seconds from spawn to SIGKILL


@dataclass
class Crashes:
    kills: list[Kill] = field(default_factory=list)

    @property
    def interrupted(self) -> int:
        """Kills that landed while the daemon was working, not before or after."""
        return sum(k.progressed and k.work_left for k in self.kills)

    @property
    def mid_send(self) -> int:
        return sum(k.mid_send for k in self.kills)

    def summary(self) -> str:
        early = sum(k.when == "startup" for k in self.kills)
        events = sum(k.when.startswith("after") for k in self.kills)
        idle = sum(k.when == "idle" for k in self.kills)
        return (
            f"{len(self.kills)} kills ({early} in startup, {events} right after an event, "
            f"{idle} waited in vain for one), "
            f"{self.interrupted} in the middle "
            f"of work, {self.mid_send} between claim and receipt; "
            f"alive {sum(k.lived for k in self.kills):.1f} s in all"
        )


def crash_rounds(
    harness: Harness,
    paths: Paths,
    rng: random.Random,
    rounds: int,
    before: Callable[[int], None],
    marker: bytes,
    most: int,
) -> Crashes:
    """Start the daemon and SIGKILL it ``rounds`` times, calling ``before(i)`` in between.

    Three ways to pick the moment, drawn at random each round: from spawn (0.05 to
    0.6 s: startup, schema check, lease), from the ready line (0 to 0.3 s), or just
    after the k-th ``marker`` log line of the run (k from 1 to ``most``, then 0 to
    20 ms more), which lands inside the handling of the next item.
    """
    crashes = Crashes()
    for i in range(rounds):
        before(i)
        done_before = paths.progress()
        run = harness.start()
        draw = rng.random()
        if draw < 0.15:
            when, delay = "startup", rng.uniform(0.05, 0.6)
            time.sleep(max(0.0, run.started + delay - time.monotonic()))
        elif draw < 0.5:
            when, delay = "working", rng.uniform(0.0, 0.3)
            harness.wait_ready(run)
            time.sleep(delay)
        else:
            count, delay = rng.randint(1, most), rng.uniform(0.0, 0.02)
            seen = harness.wait_for(run, marker, count)
            when = f"after event {count}" if seen else "idle"
            time.sleep(delay)
        harness.kill(run)
        lived = time.monotonic() - run.started
        crashes.kills.append(
            Kill(
                i,
                when,
                delay,
                progressed=paths.progress() > done_before,
                work_left=paths.busy(),
                mid_send=paths.held_by(run.proc.pid),
                lived=lived,
            )
        )
    return crashes


def run_to_completion(
    harness: Harness, paths: Paths, done: Callable[[], bool], timeout: float = 40.0
) -> None:
    """One last run that is allowed to finish (leases of killed sends expire), then SIGTERM."""
    run = harness.start()
    harness.wait_ready(run)
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline or run.proc.poll() is not None:
            harness.stop(run)
            pytest.fail(f"work not finished: {paths.waiting()} in inbox, {paths.pending()} pending in outbox")
        time.sleep(0.1)
    assert harness.stop(run) == 0, run.log.read_text(errors="replace")[-3000:]


@contextmanager
def gateway_of(config: Path, clock: Clock | None = None) -> Iterator[Gateway]:
    gw = open_gateway(load_settings(config), clock=clock)
    try:
        yield gw
    finally:
        gw.close()


# Test data ----------------------------------------------------------------------------


@dataclass(frozen=True)
class SentOrder:
    order_id: str
    national_id: str
    case_reference: str
    data: bytes


def make_orders(rng: random.Random) -> list[SentOrder]:
    """Distinct people (synthetic numbers), case references and OrdreIds."""
    orders = []
    for i in range(ORDERS):
        birth = date(1970 + i // 12, i % 12 + 1, (i * 7) % 28 + 1)
        national_id = fnr(birth)
        order_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        reference = str(24_100_000 + i)
        data = order_xml(order_id=order_id, national_id=national_id, birth=birth, case_reference=reference)
        orders.append(SentOrder(order_id, national_id, reference, data))
    assert len({o.national_id for o in orders}) == ORDERS
    return orders


def intake_waves(orders: list[SentOrder]) -> dict[int, list[tuple[str, bytes]]]:
    """Files to drop before each round: every order once, plus two kinds of repeat.

    Every 6th order is dropped again byte for byte under another name (in the same
    round, or the next when it is also a 12th); every 10th is re-sent with the same
    OrdreId but other bytes (a new ``Sendt``), which intake must see as one order.
    """
    waves: dict[int, list[tuple[str, bytes]]] = {}
    for i, order in enumerate(orders):
        wave = i // ORDERS_PER_ROUND
        waves.setdefault(wave, []).append((f"ordre-{i:03d}.xml", order.data))
        if i % 6 == 0:
            later = wave + (1 if i % 12 == 0 else 0)
            waves.setdefault(later, []).append((f"ordre-{i:03d}-kopi.xml", order.data))
        if i % 10 == 5:
            resent = order.data.replace(b"2026-11-20T09:00:00+00:00", b"2026-11-20T09:30:00+00:00")
            assert resent != order.data
            waves.setdefault(wave, []).append((f"ordre-{i:03d}-igjen.xml", resent))
    assert max(waves) < INTAKE_ROUNDS
    return waves


def distinct_contents(waves: dict[int, list[tuple[str, bytes]]]) -> int:
    return len({data for files in waves.values() for _, data in files})


# The test -----------------------------------------------------------------------------


def test_sigkill_during_intake_and_dispatch_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    seed = int(os.environ.get("RUSSAK_CRASH_SEED") or random.SystemRandom().randrange(2**32))
    try:
        _crash_test(tmp_path, seed)
    except BaseException:
        print(f"crash test seed: {seed} (repeat with RUSSAK_CRASH_SEED={seed})")
        raise


def _crash_test(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    root = tmp_path / "gw"
    # Random kills are not a poison message: do not set any message aside for them.
    config = write_config(root, extra_gateway="max_intake_attempts = 1000")
    paths = Paths(root)
    paths.inbox.mkdir(parents=True, exist_ok=True)
    logs = tmp_path / "logs"
    logs.mkdir()
    harness = Harness(config, logs)
    started = time.monotonic()

    # Phase 1: intake --------------------------------------------------------------
    orders = make_orders(rng)
    waves = intake_waves(orders)

    def feed(i: int) -> None:
        for name, data in waves.get(i, []):
            drop_file(paths.inbox, name, data)

    intake = crash_rounds(harness, paths, rng, INTAKE_ROUNDS, feed, INTAKE_LINE, ORDERS_PER_ROUND - 1)
    run_to_completion(harness, paths, lambda: not paths.busy())

    listed = json.loads(harness.cli("cases", "--json"))
    by_order = Counter(c["order_id"] for c in listed)
    assert set(by_order) == {o.order_id for o in orders}, "an order was lost (or a stranger appeared)"
    assert max(by_order.values()) == 1, "a case was duplicated"
    assert len(listed) == ORDERS
    assert len({c["number"] for c in listed}) == ORDERS
    assert {c["status"] for c in listed} == {"awaiting_summons"}
    assert paths.waiting() == 0
    assert paths.scalar("SELECT count(*) FROM orders") == ORDERS
    assert paths.scalar("SELECT count(*) FROM inbound_messages") == distinct_contents(waves)
    assert paths.scalar("SELECT count(*) FROM quarantine") == 0
    assert paths.scalar("SELECT count(*) FROM outbox WHERE status != 'sent'") == 0

    # Phase 2: dispatch ------------------------------------------------------------
    number_of = {c["order_id"]: c["number"] for c in listed}
    noticed = orders[:NOTICES]
    attended = orders[NOTICES : NOTICES + ATTENDED]
    per_round = NOTICES // DISPATCH_ROUNDS
    notice_waves = {r: noticed[r * per_round : (r + 1) * per_round] for r in range(DISPATCH_ROUNDS)}
    attend_waves = {3 * j: [order] for j, order in enumerate(attended)}

    def confirm(i: int) -> None:
        """Staff record a missed meeting and confirm the notice while the daemon is down.

        The meetings were booked a fortnight ago (a clock set back for the booking:
        the rules accept only bookings in the future) and held a week ago.
        """
        booked_at = SystemClock().now() - timedelta(days=14)
        meeting = local_today(booked_at) + timedelta(days=7)
        cases_now = [*notice_waves.get(i, []), *attend_waves.get(i, [])]
        with gateway_of(config, SimulatedClock(booked_at)) as gw, gw.session() as session:
            for order in cases_now:
                case = svc.get_case(session, number_of[order.order_id])
                perform(gw, session, case, Command("summoned", on=meeting), ACTOR)
        with gateway_of(config) as gw, gw.session() as session:
            for order in notice_waves.get(i, []):
                case = svc.get_case(session, number_of[order.order_id])
                perform(gw, session, case, Command("no-show", on=meeting), ACTOR)
                perform(gw, session, case, Command("send-notice"), ACTOR)
            for order in attend_waves.get(i, []):
                case = svc.get_case(session, number_of[order.order_id])
                perform(gw, session, case, Command("attended", on=meeting), ACTOR)

    dispatch = crash_rounds(harness, paths, rng, DISPATCH_ROUNDS, confirm, DELIVERY_LINE, 5)
    run_to_completion(
        harness,
        paths,
        lambda: (
            paths.pending() == 0
            and paths.scalar("SELECT count(*) FROM notices WHERE status = 'sent'") == NOTICES
        ),
    )
    print(
        f"seed {seed}: intake {intake.summary()}; dispatch {dispatch.summary()}; "
        f"{harness.runs} processes in {time.monotonic() - started:.1f} s"
    )

    # The kills must have hit work in progress, or this test proves nothing.
    assert intake.interrupted >= 3, intake.summary()
    assert dispatch.interrupted >= 3, dispatch.summary()
    assert intake.mid_send + dispatch.mid_send >= 1, "no kill landed between claim and receipt"

    _check_dispatch(config, paths, noticed, attended, logs)
    _check_privacy(paths, logs, orders, noticed)


def _check_dispatch(
    config: Path, paths: Paths, noticed: list[SentOrder], attended: list[SentOrder], logs: Path
) -> None:
    with gateway_of(config) as gw, gw.session() as session:
        items = session.scalars(select(OutboxItem).order_by(OutboxItem.id)).all()
        notices = session.scalars(select(Notice)).all()
        case_of = {c.id: c for c in session.scalars(select(Case))}

    # Every outbox row delivered; nothing dead, nothing cancelled in this story.
    assert Counter(i.status for i in items) == {"sent": len(items)}
    by_order = {case_of[n.case_id].order_id: n for n in notices}
    assert len(notices) == NOTICES and set(by_order) == {o.order_id for o in noticed}
    assert {n.status for n in notices} == {"sent"}
    for order in noticed:
        assert case_of_order(case_of, order).status == "notified"
    for order in attended:
        case = case_of_order(case_of, order)
        assert case.status == "fulfilled" and case.notice_state == "none"

    # One notice row per notice, keyed by its MeldingId, never re-keyed for a retry.
    notice_items = [i for i in items if i.kind == "notice"]
    assert sorted(i.key for i in notice_items) == sorted(f"notice:{n.message_id}" for n in notices)

    # The spool outbox: exactly one .xml (and its .txt) per notice row, one MeldingId each.
    xml_files = sorted(p.name for p in paths.outbox.glob("*.xml"))
    assert xml_files == sorted(f"{safe_name(i.key)}.xml" for i in notice_items)
    assert sorted(p.stem for p in paths.outbox.glob("*.txt")) == sorted(Path(n).stem for n in xml_files)
    seen: Counter[str] = Counter()
    for path in paths.outbox.glob("*.xml"):
        doc = etree.fromstring(path.read_bytes())
        message_id = doc.findtext(f"{{{NOTICE_NS}}}MeldingId")
        assert message_id is not None
        seen[message_id] += 1
        notice = next(n for n in notices if n.message_id == message_id)
        case = case_of[notice.case_id]
        assert doc.findtext(f"{{{NOTICE_NS}}}GjelderOrdreId") == case.order_id
        assert doc.findtext(f"{{{NOTICE_NS}}}Saksnummer") == case.case_reference
    assert set(seen) == {n.message_id for n in notices}
    assert max(seen.values()) == 1, "a notice was delivered twice"

    # Attended cases left no trace in anything sent to the police.
    police_text = b"".join(p.read_bytes() for p in paths.outbox.iterdir() if not p.name.startswith("."))
    for order in attended:
        assert order.case_reference.encode() not in police_text
        assert order.order_id.encode() not in police_text

    # Staff mail: one file per outbox key, and each Message-ID once.
    mail_items = [i for i in items if i.kind != "notice"]
    assert sorted(p.name for p in paths.mail.glob("*.eml")) == sorted(
        f"{safe_name(i.key)}.eml" for i in mail_items
    )
    ids = Counter(
        str(BytesParser(policy=policy.default).parsebytes(p.read_bytes())["Message-ID"])
        for p in paths.mail.glob("*.eml")
    )
    assert len(ids) == len(mail_items) and max(ids.values()) == 1

    # Repeats happen only through the channel's duplicate receipt: per outbox row, the
    # channel reported a fresh write at most once, and a duplicate only after a retry.
    fresh: Counter[int] = Counter()
    repeated: Counter[int] = Counter()
    for log in sorted(logs.glob("daemon-*.log")):
        for match in DELIVERED.finditer(log.read_bytes()):
            (repeated if match.group(3) else fresh)[int(match.group(1))] += 1
    attempts = {i.id: i.attempts for i in items}
    assert not [k for k, n in fresh.items() if n > 1], "an outbox row was written twice"
    assert all(attempts[k] >= 2 for k in repeated), "a duplicate receipt without a retry"
    assert set(fresh) | set(repeated) <= set(attempts)
    orphans = [p for folder in (paths.outbox, paths.mail) for p in folder.glob(".*.tmp")]
    print(
        f"{sum(repeated.values())} duplicate receipt(s) ('already delivered earlier'), "
        f"{sum(a > 1 for a in attempts.values())} row(s) retried after a kill, "
        f"{len(orphans)} temporary file(s) left behind by kills"
    )


def case_of_order(case_of: dict[int, Case], order: SentOrder) -> Case:
    found = [c for c in case_of.values() if c.order_id == order.order_id]
    assert len(found) == 1
    return found[0]


def _identity_patterns(national_id: str) -> list[bytes]:
    return [national_id.encode(), f"{national_id[:6]} {national_id[6:]}".encode()]


def _check_privacy(paths: Paths, logs: Path, orders: list[SentOrder], noticed: list[SentOrder]) -> None:
    """No identity number in clear in the database files, the logs or staff mail."""
    stored = [
        p
        for p in (
            paths.db,
            paths.db.with_name("russak.db-wal"),
            paths.db.with_name("russak.db-shm"),
        )
        if p.exists()
    ]
    assert paths.db in stored and paths.db.stat().st_size > 0
    texts: dict[str, bytes] = {p.name: p.read_bytes() for p in stored}
    texts.update({p.name: p.read_bytes() for p in sorted(logs.iterdir())})
    for path in sorted(paths.mail.glob("*.eml")):
        raw = path.read_bytes()
        parsed = BytesParser(policy=policy.default).parsebytes(raw)
        decoded = "\n".join(str(part.get_content()) for part in parsed.walk() if not part.is_multipart())
        texts[path.name] = raw + b"\n" + decoded.encode()
    leaks = [
        name
        for name, data in texts.items()
        for order in orders
        if any(pattern in data for pattern in _identity_patterns(order.national_id))
    ]
    assert not leaks, f"identity number in clear in: {sorted(set(leaks))}"

    # Positive control: the scan does find numbers where they belong (the notices).
    police = b"".join(p.read_bytes() for p in paths.outbox.glob("*.xml"))
    assert all(o.national_id.encode() in police for o in noticed)
    assert not any(o.national_id.encode() in police for o in orders[len(noticed) :])
