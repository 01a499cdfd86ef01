"""Soak: many messages through intake and outbox of the running daemon, memory watched.

Usage::

    .venv/bin/python benchmarks/soak.py                      # 100,000 messages, plain table
    .venv/bin/python benchmarks/soak.py --messages 3000      # a short run while developing
    .venv/bin/python benchmarks/soak.py --markdown --keep --dir /var/tmp
    .venv/bin/python benchmarks/soak.py --messages 6000 --warmup 1500 --trace-memory   # where memory goes

What it does, in order:

1. ``russak init`` in a temporary folder (the embedded default: SQLite and a spool
   folder), then the configuration is edited only where a soak needs it: poll and
   tick every ``--poll-seconds`` / ``--tick-seconds`` instead of 60 s, and a contact
   for the unit (init leaves it empty, and a notice to the police names it).
2. The real daemon, ``python -m gateway --config … run``, as a child process, and
   the script waits for its ready line. Nothing of the gateway runs in this process
   except the spool's own ``drop_file`` (the documented drop protocol: a dot-file,
   fsync, rename) and the sample builders.
3. ``--messages`` files are dropped into ``spool/inbox/`` in waves of ``--wave``,
   and a wave is only dropped while fewer than ``--max-inbox`` files wait there and
   fewer than ``--max-pending`` outbox rows wait to be sent. The daemon is therefore
   soaked in a steady state with bounded queues, which is what years of service look
   like, and not measured on a backlog it has not yet read. When ``--digest-at`` of
   the messages (default half) have been fed, ``digest_time`` is moved to two minutes
   ahead and the daemon reloaded (SIGHUP), so the daily digest, the one step whose
   work grows with every open case, runs inside the measured window.
4. The script is also the pickup on the other side (docs/spool.md): it takes every
   staff mail out of ``spool/mail/`` and every notice set out of ``spool/outbox/``
   (the ``.xml`` marker last), counts them by kind, and checks that no identity
   number it fed appears in any staff mail. It is the staff as well: for some cases
   it answers the new-case alert by mail (``INNKALT``, then ``MØTT`` or ``IKKE
   MØTT`` and ``SEND VARSEL`` once the meeting time has passed, ``AVSLUTT``,
   ``STATUS``), each command sent only after the reply to the one before came out.
5. Every ``--sample-seconds`` it reads the daemon's ``VmRSS`` (and ``RssAnon`` /
   ``RssFile``) from ``/proc/<pid>/status`` and ``utime + stime`` from
   ``/proc/<pid>/stat``. Warm-up ends when ``--warmup`` messages have been taken
   (default 10,000, or a tenth of a shorter run); the run passes when the spread of
   RSS after warm-up stays within ``--rss-slack-mib``.
6. At the end it waits for the inbox and the outbox to drain, checks what came out
   against what went in (read-only SQL on the database file and ``russak status
   --json``), sends SIGTERM and expects exit code 0 within 10 s.

The mix (of the generated messages; staff commands come on top, about 4 %): 87 %
new orders from ``tests.factories.order_xml`` (8 % of them for minors with
guardians, 15 % with drug testing, 3 % with an attendance deadline inside the
warning window, so the tick sends a reminder), 1 % orders for a person who already
has an open case (a "same person" alert), 1 % orders attached to police mail, 0.3 %
police letters without XML, 2 % re-deliveries (the same bytes again, or a police
mail again with a new ``Received:`` header), 1 % orders re-sent with the same
``OrdreId``, 2 % hostile or malformed XML (entity bombs, XXE, floods, truncation,
wrong namespace, schema errors, unknown recipient, garbage), 0.4 % mail from an
unknown sender, 0.3 % auto-replies, and 0.2 % withdrawals that arrive before the
order they name. Amendments and withdrawals of taken orders follow for about 1 % of
the cases. Identity numbers are synthetic (month + 80), one per person; the script
never prints one.

The waves are small (200 files, at most 400 waiting, at most 400 outbox rows
pending) because the daemon has one worker: a poll takes in everything the inbox
holds before the next tick may send anything, and a tick sends at most 100 rows
(``gateway.ops.dispatch.DISPATCH_BATCH``). With 2,000 files waiting, staff alerts
queued up behind intake for tens of seconds and the outbox backlog grew to about
2,500 rows; with these bounds both queues stay short.

With ``--trace-memory`` the daemon is started through a small wrapper (the same
entry point as ``python -m gateway``) that writes, on SIGUSR1, the garbage
collector's object count, ``sys.getallocatedblocks()``, glibc's ``mallinfo2()``
(heap in use and free, all arenas) and, with ``--trace-frames`` above 0 (default
1), a ``tracemalloc`` snapshot. The script sends it at warm-up and at the end and
prints the difference, by line for tracemalloc. tracemalloc slows the daemon down
about twice and taking a snapshot leaves its own tens of MiB in RSS, so with it the
RSS figures mean nothing; ``--trace-frames 0`` costs nothing and keeps them. Use
either to explain what an ordinary run shows, not to measure.

This is a script, not a test: it exits 1 if a check or the flatness bound fails.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import itertools
import json
import os
import platform
import random
import re
import resource
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' factories live beside the package

from connectors.spool import drop_file  # noqa: E402
from gateway.clock import OSLO  # noqa: E402
from gateway.domain.calendar import WorkingCalendar  # noqa: E402
from gateway.domain.identifiers import synthetic_identity_number  # noqa: E402
from tests.factories import KOMMUNE, POLICE_SENDER, STAFF, fnr, order_xml  # noqa: E402

READY = b"russak-gateway running"
GATEWAY_ADDRESS = "russak-gateway@kommune.example"
HOSTILE_DIR = ROOT / "tests" / "hostile"
MIB = 1024.0
ELEVEN_DIGITS = re.compile(r"(?<!\d)\d{11}(?!\d)")
CASE_TAG = re.compile(r"\[(RUS-\d{4}-\d+)\]")

# What the generated messages are (staff commands, amendments and withdrawals of
# taken orders come on top of these, driven by what the gateway answers).
MIX: tuple[tuple[str, float], ...] = (
    ("order", 0.870),
    ("order-same-person", 0.010),
    ("order-by-mail", 0.010),
    ("letter", 0.003),
    ("redelivery", 0.020),
    ("order-resent", 0.010),
    ("hostile-xml", 0.020),
    ("stranger-mail", 0.004),
    ("auto-reply", 0.003),
    ("withdrawal-first", 0.002),
)
# What staff and the police do later with some of the new orders, and the messages
# each takes: staff commands by mail, or an endring / tilbakekall from the police.
FATES: dict[str, tuple[float, tuple[str, ...]]] = {
    "attend": (0.015, ("summon", "attended")),
    "no-show": (0.005, ("summon", "no-show", "send-notice")),
    "moved": (0.003, ("close",)),
    "status": (0.003, ("status",)),
    "withdraw": (0.005, ("tilbakekall",)),
    "amend": (0.005, ("endring",)),
}
COMMANDS = {
    "attended": "MØTT",
    "no-show": "IKKE MØTT",
    "send-notice": "SEND VARSEL",
    "close": "AVSLUTT flyttet",
    "status": "STATUS",
}
FINAL_STATUS = {
    "attend": "fulfilled",
    "no-show": "notified",
    "moved": "closed",
    "status": "awaiting_summons",
    "withdraw": "withdrawn",
    "amend": "awaiting_summons",
}
FIRST_NAMES = ("Ola", "Kari", "Per", "Ingrid", "Ali", "Sara", "Jonas", "Nora", "Emil", "Maja")
LAST_NAMES = ("Testesen", "Prøvemann", "Eksempel", "Syntetisk", "Fiktiv", "Dummy")


# -- the daemon's process ------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, RssShmem (KiB) and Threads from /proc/<pid>/status."""
    found: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
            found[key] = int(value.split()[0])
    return found


# The --trace-memory wrapper: the same CLI entry point as ``python -m gateway``, with
# tracemalloc on and a snapshot (plus the GC's object count) written on SIGUSR1.
TRACE_WRAPPER = """
import ctypes, gc, json, os, signal, sys, tracemalloc
frames = int(os.environ.get("SOAK_TRACE_FRAMES", "1"))
if frames > 0:
    tracemalloc.start(frames)
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
        "keepcost")]
mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = MallInfo2
out, count = os.environ["SOAK_TRACE_DIR"], [0]
def dump(signum, frame):
    count[0] += 1
    gc.collect()
    base = os.path.join(out, "snap-%d" % count[0])
    facts = {"objects": len(gc.get_objects()), "blocks": sys.getallocatedblocks()}
    if frames > 0:
        facts["traced"] = tracemalloc.get_traced_memory()[0]
        tracemalloc.take_snapshot().dump(base + ".tracemalloc")
    info = mallinfo2()
    facts |= {name: getattr(info, name) for name in ("arena", "hblkhd", "uordblks", "fordblks")}
    # pymalloc's own arenas (mmap'd, outside glibc's figures): sys._debugmallocstats writes
    # to the C stderr, so point fd 2 at a file for the moment it takes
    saved, path = os.dup(2), base + ".pymalloc"
    with open(path, "w") as handle:
        os.dup2(handle.fileno(), 2)
        try:
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    for line in open(path):
        for key, label in (("arenas", "# arenas allocated current"),
                           ("pyblocks", "# bytes in allocated blocks"),
                           ("pyfree", "# bytes in available blocks")):
            if line.startswith(label):
                facts[key] = int(line.split("=")[1].replace(",", ""))
    with open(base + ".tmp", "w") as handle:
        json.dump(facts, handle)
    os.replace(base + ".tmp", base + ".json")
signal.signal(signal.SIGUSR1, dump)
from gateway.cli import main
main(prog_name="russak")
"""


@dataclass
class Site:
    root: Path
    config: Path
    database: Path
    inbox: Path
    mail: Path
    outbox: Path
    delivered: Path
    log: Path


def _set(text: str, key: str, value: str) -> str:
    changed, count = re.subn(rf"(?m)^({re.escape(key)}\s*=\s*)[^#\n]*?(\s*(#.*)?)$", rf"\g<1>{value}\2", text)
    if count != 1:
        raise SystemExit(f"soak: russak init's configuration has no single {key} line; update soak.py")
    return changed


def make_site(base: Path, poll: float, tick: float, env: dict[str, str]) -> Site:
    root = base / "site"
    subprocess.run(
        [sys.executable, "-m", "gateway", "init", "--dir", str(root)],
        check=True,
        capture_output=True,
        env=env,
    )
    config = root / "russak.toml"
    text = config.read_text(encoding="utf-8")
    text = _set(text, "poll_interval_seconds", f"{poll:g}")
    text = _set(text, "tick_interval_seconds", f"{tick:g}")
    text = _set(text, "contact_name", '"Kari Kontakt"')
    text = _set(text, "contact_phone", '"+47 55 00 00 00"')
    # No digest before the script moves it into the run (Soak._digest_soon): one sent at
    # the start, over an empty database, would take the day's once-a-day key.
    text = _set(text, "digest_time", '"23:59"')
    config.write_text(text, encoding="utf-8")
    spool = root / "spool"
    return Site(
        root=root,
        config=config,
        database=root / "russak.db",
        inbox=spool / "inbox",
        mail=spool / "mail",
        outbox=spool / "outbox",
        delivered=spool / ".delivered",
        log=base / "daemon.log",
    )


class Daemon:
    """``python -m gateway run`` as a child, its output in a log file."""

    def __init__(
        self, site: Site, env: dict[str, str], trace_dir: Path | None, trace_frames: int = 1
    ) -> None:
        self.site = site
        self.trace_dir = trace_dir
        self._log = site.log.open("wb")
        if trace_dir is None:
            command = [sys.executable, "-m", "gateway", "--config", str(site.config), "run"]
        else:
            env = {**env, "SOAK_TRACE_DIR": str(trace_dir), "SOAK_TRACE_FRAMES": str(trace_frames)}
            command = [sys.executable, "-c", TRACE_WRAPPER, "--config", str(site.config), "run"]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, stdout=self._log, stderr=subprocess.STDOUT, env=env)
        self.pid = self.proc.pid
        self.snapshots = 0

    def wait_ready(self, timeout: float = 120.0) -> float:
        while READY not in self.site.log.read_bytes():
            if self.proc.poll() is not None or time.monotonic() - self.started > timeout:
                raise SystemExit(
                    "soak: the daemon did not start:\n" + self.site.log.read_text(errors="replace")
                )
            time.sleep(0.02)
        return time.monotonic() - self.started

    def alive(self) -> bool:
        return self.proc.poll() is None

    def snapshot(self, timeout: float = 600.0) -> Path:
        """--trace-memory: ask the wrapper for a snapshot and wait for it."""
        assert self.trace_dir is not None
        self.snapshots += 1
        done = self.trace_dir / f"snap-{self.snapshots}.json"
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while not done.exists():
            if time.monotonic() > deadline or not self.alive():
                raise SystemExit("soak: no tracemalloc snapshot from the daemon")
            time.sleep(0.2)
        return done

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        """SIGTERM; the exit code (None if it did not exit in time) and how long it took."""
        started = time.monotonic()
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
        try:
            code: int | None = self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            code = None
        return code, time.monotonic() - started

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait()
        self._log.close()


class Db:
    """Read-only SQL on the database file, one short statement at a time."""

    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30, isolation_level=None)
        self.conn.execute("PRAGMA busy_timeout=30000")

    def scalar(self, sql: str, *args: object) -> int:
        row = self.conn.execute(sql, args).fetchone()
        return int(row[0] or 0) if row else 0

    def counts(self, sql: str) -> Counter[str]:
        return Counter({str(key): int(n) for key, n in self.conn.execute(sql)})

    def pending(self) -> int:
        return self.scalar("SELECT count(*) FROM outbox WHERE status = 'pending'")

    def numbers(self, order_ids: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for start in range(0, len(order_ids), 500):
            chunk = order_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT order_id, number FROM cases WHERE order_id IN ({marks})"
            found.update({str(o): str(n) for o, n in self.conn.execute(sql, chunk)})
        return found

    def close(self) -> None:
        self.conn.close()


# -- what goes in --------------------------------------------------------------------


def synthetic_people(first: date, last: date, individuals: range) -> Iterator[tuple[str, date]]:
    """Distinct synthetic numbers (month + 80), round-robin over the birth dates."""
    days = [first + timedelta(days=d) for d in range((last - first).days + 1)]
    cursors = [individuals.start] * len(days)
    while True:
        progressed = False
        for i, birth in enumerate(days):
            while cursors[i] < individuals.stop:
                value = synthetic_identity_number(birth, cursors[i])
                cursors[i] += 1
                if value:
                    progressed = True
                    yield value, birth
                    break
        if not progressed:
            raise RuntimeError("out of synthetic identity numbers")


@dataclass
class Item:
    name: str
    data: bytes
    label: str


@dataclass
class Plan:
    """What happens later to one new order (staff commands, or the police amending it)."""

    order_id: str
    fate: str
    case_reference: str
    condition_end: date
    steps: list[str]
    fed: bool = False
    number: str | None = None
    not_before: float = 0.0  # time.time() from which the next step may go
    awaiting: str | None = None  # Message-ID of the command whose reply is due
    rejected: bool = False


def mail_bytes(
    *,
    sender: str,
    subject: str,
    body: str,
    headers: dict[str, str] | None = None,
    attachments: list[tuple[str, bytes]] | None = None,
) -> tuple[bytes, str]:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = GATEWAY_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = format_datetime(datetime.now(UTC))
    message_id = make_msgid(domain=sender.rsplit("@", 1)[-1])
    msg["Message-ID"] = message_id
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(body)
    for filename, data in attachments or []:
        msg.add_attachment(data, maintype="application", subtype="xml", filename=filename)
    return msg.as_bytes(), message_id


def hostile_documents() -> list[tuple[str, bytes]]:
    """Hostile or broken XML, each of which must end in quarantine (made unique later)."""
    good = order_xml()  # valid, with the samples' synthetic number; each variant breaks one thing
    found = [(f"file:{p.stem}", p.read_bytes()) for p in sorted(HOSTILE_DIR.glob("*.xml"))]
    merknad = b"<Vilkar>"
    found += [
        ("truncated", b"<?xml version='1.0'?>" + good[: len(good) // 2]),
        ("wrong-namespace", good.replace(b"urn:no:russak:oppmoteordre:1", b"urn:example:other:1")),
        ("no-person", re.sub(rb"<Person>.*</Person>", b"", good)),
        ("bad-identity-number", b"BADNUMBER"),
        ("unknown-recipient", good.replace(f">{KOMMUNE}<".encode(), b">5501<")),
        (
            "attribute-flood",
            good.replace(merknad, b"<Vilkar" + b"".join(b' a%d="x"' % i for i in range(60)) + b">"),
        ),
        ("element-flood", good.replace(merknad, merknad + b"<a/>" * 2500)),
        ("deep-nesting", good.replace(merknad, merknad + b"<a>" * 40 + b"</a>" * 40)),
        ("long-text", good.replace(b"<Fornavn>Ola</Fornavn>", b"<Fornavn>" + b"O" * 9000 + b"</Fornavn>")),
        (
            "endring-without-target",
            good.replace(b"<Meldingstype>ny</Meldingstype>", b"<Meldingstype>endring</Meldingstype>"),
        ),
        ("bad-date", good.replace(b"<Avgjort>", b"<Avgjort>2026-13-45x")),
        ("not-xml", b"Dette er ikke XML, bare tekst fra et skjema.\n"),
        ("utf16-garbage", "<?xml version='1.0' encoding='UTF-16'?><Oppmoteordre/>".encode("utf-16")),
        ("binary", b"\x00\x01\x02\xff\xfe" * 40),
    ]
    return found


class Traffic:
    """Builds the messages: the mix above, the staff's commands, the police's follow-ups."""

    def __init__(self, total: int, seed: int, meeting_delay: float) -> None:
        self.total = total
        self.rng = random.Random(seed)
        self.meeting_delay = meeting_delay
        self.adults = synthetic_people(date(1960, 1, 1), date(1999, 12, 31), range(0, 500))
        self.minors = synthetic_people(date(2009, 1, 1), date(2011, 6, 30), range(500, 1000))
        self.hostile = hostile_documents()
        self.hostile_made = 0
        self.seq = 0
        self.fed = 0
        self.reserved = 0  # messages that plans in flight will still send
        self.numbers: set[str] = {fnr()}  # every identity number fed, for the leak checks
        self.expect: Counter[str] = Counter()  # inbound outcomes, statuses, alert kinds
        self.labels: Counter[str] = Counter()  # what was fed, by label
        self.recent: deque[Item] = deque(maxlen=3000)  # for exact re-deliveries
        self.recent_mail: deque[Item] = deque(maxlen=500)  # police mail, for re-delivery by mailbox
        self.recent_orders: deque[dict[str, Any]] = deque(maxlen=3000)  # for re-sent OrdreIds
        self.reusable: deque[tuple[str, date]] = deque(maxlen=3000)  # people with one open case
        self.deferred: list[Item] = []  # orders whose withdrawal went first
        self.plans: dict[str, Plan] = {}  # by OrdreId, until the case number is known
        self.by_number: dict[str, Plan] = {}
        self.awaiting: dict[str, Plan] = {}  # by the Message-ID of the command sent
        self.alerted: set[str] = set()  # case numbers whose new-case alert came out
        self.rejected: list[str] = []

    # -- one wave ----------------------------------------------------------------------

    def wave(self, size: int) -> list[Item]:
        room = min(size, self.total - self.fed)
        items: list[Item] = []
        while self.deferred and len(items) < room:
            items.append(self.deferred.pop(0))
            self.reserved -= 1
        items += self._steps(room - len(items))
        while len(items) < room and self.fed + len(items) + self.reserved < self.total:
            items.append(self._generate(room_left=self.total - self.fed - len(items) - self.reserved))
        self.fed += len(items)
        for item in items:
            self.labels[item.label] += 1
        return items

    def done(self) -> bool:
        return self.fed >= self.total and not self.awaiting and self.reserved == 0

    def _name(self, suffix: str) -> str:
        self.seq += 1
        return f"m{self.seq:07d}.{suffix}"

    # -- generated inputs ----------------------------------------------------------

    def _generate(self, room_left: int) -> Item:
        kind = self.rng.choices([k for k, _ in MIX], weights=[w for _, w in MIX])[0]
        if kind == "order-same-person" and self.reusable:
            return self._order(person=self.reusable.popleft(), label="order-same-person")
        if kind == "order-by-mail":
            return self._order_by_mail()
        if kind == "letter":
            return self._letter()
        if kind == "redelivery" and self.recent:
            return self._redelivery()
        if kind == "order-resent" and self.recent_orders:
            return self._resent()
        if kind == "hostile-xml":
            return self._hostile()
        if kind == "stranger-mail":
            data, _ = mail_bytes(
                sender=f"ukjent{self.seq}@example.net",
                subject="Spørsmål",
                body="Hei, hvem kan jeg snakke med om en sak?\n",
            )
            self.expect["alert:quarantine"] += 1
            return self._fed_input(Item(self._name("eml"), data, "stranger-mail"), outcome="quarantined")
        if kind == "auto-reply":
            data, _ = mail_bytes(
                sender="postmaster@example.net",
                subject="Automatisk svar: Fravær",
                body="Jeg er borte og leser ikke e-post.\n",
                headers={"Auto-Submitted": "auto-replied"},
            )
            return self._fed_input(Item(self._name("eml"), data, "auto-reply"), outcome="ignored")
        if kind == "withdrawal-first" and room_left >= 2:
            return self._withdrawal_first()
        return self._order(plan=room_left > 8, label="order")

    def _fed_input(self, item: Item, *, outcome: str | None) -> Item:
        if outcome is not None:
            self.expect[f"outcome:{outcome}"] += 1
        self.recent.append(item)
        return item

    def _order_fields(self, person: tuple[str, date] | None = None) -> dict[str, Any]:
        rng = self.rng
        today = datetime.now(OSLO).date()
        minor = person is None and rng.random() < 0.08
        number, birth = person or next(self.minors if minor else self.adults)
        self.numbers.add(number)
        decided = today - timedelta(days=rng.randint(3, 30))
        soon = rng.random() < 0.03
        fields: dict[str, Any] = {
            "order_id": str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            "sent": datetime.now(UTC) - timedelta(minutes=rng.randint(1, 600)),
            "national_id": number,
            "birth": birth,
            "first_name": rng.choice(FIRST_NAMES),
            "last_name": rng.choice(LAST_NAMES),
            "case_reference": str(50_000_000 + self.seq),
            "decided": decided,
            "condition_end": decided + timedelta(days=365 if minor else 730),
            "attendance_deadline": today + timedelta(days=7 if soon else rng.randint(60, 120)),
            "tests": 2 if rng.random() < 0.15 else 0,
        }
        if minor:
            fields |= {"reaction": "ungdomsoppfolging", "guardians": rng.randint(1, 2)}
        return fields

    def _note_order(self, fields: dict[str, Any], *, reusable: bool) -> None:
        """Expectations of a new order that will open a case."""
        self.expect["outcome:case"] += 1
        self.expect["alert:case:new"] += 1
        if fields["attendance_deadline"] - datetime.now(OSLO).date() < timedelta(days=14):
            self.expect["alert:case:attendance-deadline"] += 1
            reusable = False  # keep the reminder count exact: no other change to this case
        self.recent_orders.append(fields)
        if reusable:
            self.reusable.append((fields["national_id"], fields["birth"]))

    def _order(self, *, plan: bool = False, person: tuple[str, date] | None = None, label: str) -> Item:
        fields = self._order_fields(person)
        fate = self._fate(fields) if plan and person is None else None
        self._note_order(fields, reusable=fate is None and person is None)
        if person is not None:
            self.expect["alert:case:same-person"] += 1
        if fate is None:
            self.expect["status:awaiting_summons"] += 1
        item = Item(self._name("xml"), order_xml(**fields), label)
        return self._fed_input(item, outcome=None)

    def _fate(self, fields: dict[str, Any]) -> str | None:
        if fields["attendance_deadline"] - datetime.now(OSLO).date() < timedelta(days=14):
            return None
        draw = self.rng.random()
        for fate, (share, steps) in FATES.items():
            if draw < share:
                self.plans[fields["order_id"]] = Plan(
                    fields["order_id"],
                    fate,
                    fields["case_reference"],
                    fields["condition_end"],
                    list(steps),
                    fed=True,
                )
                self.reserved += len(steps)
                self.expect[f"status:{FINAL_STATUS[fate]}"] += 1
                self.expect[f"fate:{fate}"] += 1
                return fate
            draw -= share
        return None

    def _order_by_mail(self) -> Item:
        fields = self._order_fields()
        self._note_order(fields, reusable=False)
        self.expect["status:awaiting_summons"] += 1
        data, _ = mail_bytes(
            sender=POLICE_SENDER,
            subject=f"Oppmøteordre i straffesak {fields['case_reference']}",
            body="Vedlagt følger ordre om oppmøte hos rådgivende enhet.\n",
            attachments=[("oppmoteordre.xml", order_xml(**fields))],
        )
        item = Item(self._name("eml"), data, "order-by-mail")
        self.recent_mail.append(item)
        return self._fed_input(item, outcome=None)

    def _letter(self) -> Item:
        self.expect["outcome:letter"] += 1
        self.expect["alert:case:letter"] += 1
        self.expect["status:needs_registration"] += 1
        data, _ = mail_bytes(
            sender=POLICE_SENDER,
            subject=f"Pålegg om oppmøte, straffesak {60_000_000 + self.seq}",
            body=(
                "Påtalemyndigheten har besluttet betinget påtaleunnlatelse med vilkår om oppmøte "
                f"hos rådgivende enhet for russaker. Straffesak {60_000_000 + self.seq}, avgjort "
                f"{datetime.now(OSLO).date():%d.%m.%Y}. Personopplysninger ettersendes.\n"
            ),
        )
        item = Item(self._name("eml"), data, "letter")
        self.recent_mail.append(item)
        return self._fed_input(item, outcome=None)

    def _redelivery(self) -> Item:
        if self.recent_mail and self.rng.random() < 0.2:
            # a mailbox delivering the same police mail again: new bytes, same Message-ID
            original = self.rng.choice(self.recent_mail)
            data = f"Received: from relay{self.seq}.example.net; {format_datetime(datetime.now(UTC))}\r\n"
            self.expect["outcome:duplicate"] += 1
            return Item(self._name("eml"), data.encode() + original.data, "redelivery-mailbox")
        original = self.rng.choice(self.recent)
        self.expect["redelivered-bytes"] += 1  # same content hash: no row at all
        return Item(self._name(original.name.rsplit(".", 1)[1]), original.data, "redelivery-bytes")

    def _resent(self) -> Item:
        fields = dict(self.rng.choice(self.recent_orders))
        fields["sent"] = fields["sent"] + timedelta(seconds=self.seq)  # other bytes, the same OrdreId
        self.expect["outcome:duplicate_order"] += 1
        return Item(self._name("xml"), order_xml(**fields), "order-resent")

    def _hostile(self) -> Item:
        label, data = self.hostile[self.hostile_made % len(self.hostile)]
        self.hostile_made += 1
        if label == "bad-identity-number":
            number, birth = next(self.adults)
            wrong = number[:10] + str((int(number[10]) + 1) % 10)  # check digit broken
            data = order_xml(national_id=wrong, birth=birth)
        # unique bytes, so each one is a new message (the same bytes twice are one message)
        data = data + f"\n<!-- soak {self.seq} -->\n".encode()
        self.expect["outcome:quarantined"] += 1
        self.expect["alert:quarantine"] += 1
        self.expect[f"hostile:{label}"] += 1
        return self._fed_input(Item(self._name("xml"), data, "hostile-xml"), outcome=None)

    def _withdrawal_first(self) -> Item:
        fields = self._order_fields()
        self.expect["outcome:parked"] += 1
        self.expect["outcome:case"] += 1
        self.expect["alert:case:new"] += 1
        self.expect["alert:case:withdrawn"] += 1
        self.expect["status:withdrawn"] += 1
        if fields["attendance_deadline"] - datetime.now(OSLO).date() < timedelta(days=14):
            fields["attendance_deadline"] += timedelta(days=60)  # withdrawn: no reminder
        self.deferred.append(Item(self._name("xml"), order_xml(**fields), "order-after-withdrawal"))
        self.reserved += 1
        withdrawal = order_xml(
            message_type="tilbakekall", refers_to=fields["order_id"], sent=datetime.now(UTC)
        )
        return Item(self._name("xml"), withdrawal, "withdrawal-first")

    # -- follow-ups --------------------------------------------------------------------

    def resolve(self, db: Db) -> None:
        """Learn the case numbers of planned orders that have been taken in."""
        waiting = [oid for oid, plan in self.plans.items() if plan.fed and plan.number is None]
        if not waiting:
            return
        for order_id, number in db.numbers(waiting).items():
            plan = self.plans.pop(order_id)
            plan.number = number
            self.by_number[number] = plan

    def _steps(self, room: int) -> list[Item]:
        items: list[Item] = []
        now = time.time()
        for number, plan in list(self.by_number.items()):
            if len(items) >= room:
                break
            if plan.awaiting or plan.not_before > now or not plan.steps:
                continue
            step = plan.steps[0]
            if step in ("tilbakekall", "endring"):
                items.append(self._police_follow_up(plan, step))
            elif number in self.alerted:  # staff answer the alert they got
                items.append(self._command(plan, step))
            else:
                continue
            plan.steps.pop(0)
            self.reserved -= 1
            if not plan.steps and not plan.awaiting:
                del self.by_number[number]
        return items

    def _police_follow_up(self, plan: Plan, step: str) -> Item:
        if step == "tilbakekall":
            data = order_xml(message_type="tilbakekall", refers_to=plan.order_id, sent=datetime.now(UTC))
            self.expect["outcome:withdrawn"] += 1
            self.expect["alert:case:withdrawn"] += 1
        else:
            data = order_xml(
                message_type="endring",
                refers_to=plan.order_id,
                sent=datetime.now(UTC),
                case_reference=plan.case_reference,
                condition_end=plan.condition_end + timedelta(days=90),
                attendance_deadline=datetime.now(OSLO).date() + timedelta(days=150),
            )
            self.expect["outcome:amended"] += 1
            self.expect["alert:case:amended"] += 1
        return Item(self._name("xml"), data, step)

    def _command(self, plan: Plan, step: str) -> Item:
        assert plan.number is not None
        if step == "summon":
            meeting = datetime.now(OSLO) + timedelta(seconds=self.meeting_delay + 60)
            meeting = meeting.replace(second=0, microsecond=0)
            line = f"INNKALT {meeting:%Y-%m-%d} {meeting:%H:%M} Kontoret"
            plan.not_before = meeting.timestamp() + 5  # the next step only once it has begun
        else:
            line = COMMANDS[step]
        if step == "no-show":
            self.expect["alert:notice:drafted"] += 1
        if step == "send-notice":
            self.expect["alert:notice:sent"] += 1
            self.expect["notice-sets"] += 1
        self.expect["outcome:command"] += 1
        self.expect["alert:reply"] += 1
        data, message_id = mail_bytes(
            sender=STAFF,
            subject=f"SV: [{plan.number}] Ny sak",
            body=f"{line}\n\nHilsen saksbehandler\n",
        )
        plan.awaiting = message_id
        self.awaiting[message_id] = plan
        return Item(self._name("eml"), data, f"command:{step}")

    def replied(self, in_reply_to: str, subject: str) -> None:
        plan = self.awaiting.pop(in_reply_to.strip(), None)
        if plan is None:
            return
        plan.awaiting = None
        if subject.startswith(("Feil", "Allerede")):
            plan.rejected = True
            self.rejected.append(f"{plan.fate}: {subject[:60]}")
            self.reserved -= len(plan.steps)
            plan.steps.clear()
        if not plan.steps and plan.number is not None:
            self.by_number.pop(plan.number, None)


# -- what comes out ------------------------------------------------------------------


def mail_kind(stem: str) -> str:
    """The kind of a staff mail from its file name, which is derived from its outbox key."""
    parts = stem.rsplit("-", 1)[0].split("_")
    if parts[0] in ("case", "notice", "order") and len(parts) >= 3:
        return f"{parts[0]}:{parts[2]}"
    return parts[0]


class Pickup:
    """Takes staff mail out of mail/ and notice sets out of outbox/, as docs/spool.md says."""

    def __init__(self, site: Site, traffic: Traffic) -> None:
        self.site = site
        self.traffic = traffic
        self.kinds: Counter[str] = Counter()
        self.mail_files = 0
        self.notice_sets = 0
        self.leaks = 0  # identity numbers seen in staff mail
        self.bad_notices = 0

    def collect(self) -> int:
        taken = 0
        with os.scandir(self.site.mail) as entries:
            names = [e.name for e in entries if not e.name.startswith(".") and e.name.endswith(".eml")]
        for name in names:
            path = self.site.mail / name
            data = path.read_bytes()
            self._mail(name[:-4], data)
            path.unlink()
            taken += 1
        with os.scandir(self.site.outbox) as entries:
            markers = [e.name for e in entries if not e.name.startswith(".") and e.name.endswith(".xml")]
        for name in markers:
            stem = name[:-4]
            manifest = json.loads((self.site.outbox / f"{stem}.json").read_text(encoding="utf-8"))
            document = (self.site.outbox / name).read_bytes()
            ok = (
                manifest.get("kind") == "notice"
                and manifest.get("melding_id")
                and manifest.get("recipients")
                and b"urn:no:russak:melding:1" in document
                and b"MeldingOmManglendeOppfyllelse" in document
            )
            self.bad_notices += not ok
            for suffix in (".txt", ".json", ".xml"):  # the marker last
                (self.site.outbox / f"{stem}{suffix}").unlink()
            self.notice_sets += 1
            taken += 1
        return taken

    def _mail(self, stem: str, data: bytes) -> None:
        self.mail_files += 1
        kind = mail_kind(stem)
        self.kinds[kind] += 1
        message = email.message_from_bytes(data, policy=email.policy.default)
        subject = str(message.get("Subject", ""))
        body = message.get_body(preferencelist=("plain",))
        text = subject + "\n" + (body.get_content() if body is not None else "")
        self.leaks += sum(1 for found in ELEVEN_DIGITS.findall(text) if found in self.traffic.numbers)
        tag = CASE_TAG.search(subject)
        if kind == "case:new" and tag:
            self.traffic.alerted.add(tag.group(1))
        in_reply_to = message.get("In-Reply-To")
        if kind == "reply" and in_reply_to:
            self.traffic.replied(str(in_reply_to), re.sub(r"^\[[^]]*\]\s*", "", subject))


# -- the run -------------------------------------------------------------------------


@dataclass
class Sample:
    t: float
    fed: int
    taken: int
    rss: int
    anon: int
    file: int
    cpu: float
    pending: int
    db_bytes: int
    wal_bytes: int
    threads: int


@dataclass
class Wave:
    names: list[str]
    dropped_at: float
    done_at: float | None = None
    taken_before: int = 0


@dataclass
class Result:
    rows: list[tuple[str, str]] = field(default_factory=list)
    points: list[tuple[str, Sample]] = field(default_factory=list)
    checks: list[tuple[str, str, str, bool]] = field(default_factory=list)
    passed: bool = True

    def add(self, measure: str, value: str) -> None:
        self.rows.append((measure, value))
        print(f"soak: {measure}: {value}", file=sys.stderr, flush=True)

    def check(self, what: str, expected: object, seen: object, ok: bool | None = None) -> None:
        good = (expected == seen) if ok is None else ok
        self.checks.append((what, str(expected), str(seen), good))
        self.passed &= good
        if not good:
            print(f"soak: CHECK FAILED: {what}: expected {expected}, saw {seen}", file=sys.stderr, flush=True)


def file_size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


class Soak:
    def __init__(self, args: argparse.Namespace, base: Path) -> None:
        self.args = args
        self.env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "RUSSAK_CONFIG")
        }
        self.site = make_site(base, args.poll_seconds, args.tick_seconds, self.env)
        self.traffic = Traffic(args.messages, args.seed, args.meeting_delay)
        self.pickup = Pickup(self.site, self.traffic)
        self.trace_dir = base / "trace" if args.trace_memory else None
        if self.trace_dir is not None:
            self.trace_dir.mkdir()
        self.samples: list[Sample] = []
        self.waves: list[Wave] = []
        self.result = Result()
        self.warmup = args.warmup if args.warmup is not None else min(10_000, args.messages // 10)
        self.snapshots: list[Path] = []

    def run(self) -> Result:
        daemon = Daemon(self.site, self.env, self.trace_dir, self.args.trace_frames)
        try:
            startup = daemon.wait_ready()
            self.result.add("startup to ready", f"{startup:.2f} s")
            db = Db(self.site.database)
            try:
                self._feed(daemon, db)
                status = self._status()
                self._sample(daemon, db)  # the 100 % point: everything in and out
                if self.trace_dir is not None:
                    self.snapshots.append(daemon.snapshot())
                code, seconds = daemon.stop()
                self._stopped(code, seconds)
                self._checks(db, status)
            finally:
                db.close()
        finally:
            daemon.kill()
        self._figures()
        self._log_checks()
        if len(self.snapshots) == 2:
            self._trace()
        return self.result

    # -- feeding -------------------------------------------------------------------

    def _feed(self, daemon: Daemon, db: Db) -> None:
        args, traffic = self.args, self.traffic
        self.t0 = time.monotonic()
        next_sample = next_progress = next_resolve = 0.0
        self.feed_end: float | None = None
        self.digest_asked: int | None = None
        stable_since: float | None = None
        while True:
            if not daemon.alive():
                raise SystemExit(
                    "soak: the daemon died:\n" + self.site.log.read_text(errors="replace")[-4000:]
                )
            now = time.monotonic()
            self.pickup.collect()
            waiting = self._waiting()
            self._waves_done(waiting, now)
            if now >= next_resolve:
                traffic.resolve(db)
                next_resolve = now + 1.0
            pending = db.pending()
            if (
                not traffic.done()
                and len(waiting) + args.wave <= args.max_inbox
                and pending <= args.max_pending
            ):
                self._drop(traffic.wave(args.wave), now)
            if traffic.done() and self.feed_end is None:
                self.feed_end = now
            if self.digest_asked is None and traffic.fed >= args.digest_at * traffic.total:
                self._digest_soon(daemon)
            if now >= next_sample:
                self._sample(daemon, db, pending=pending, waiting=len(waiting))
                next_sample = now + args.sample_seconds
                if (
                    self.trace_dir is not None
                    and not self.snapshots
                    and self._taken(len(waiting)) >= self.warmup
                ):
                    self.snapshots.append(daemon.snapshot())
            if now >= next_progress:
                self._progress(len(waiting), pending)
                next_progress = now + 15
            if traffic.done() and not waiting and pending == 0 and self._drained(db):
                stable_since = stable_since or now
                if now - stable_since >= max(3.0, 2 * args.tick_seconds):
                    break
            else:
                stable_since = None
            if self.feed_end is not None and now - self.feed_end > args.drain_timeout:
                raise SystemExit(
                    f"soak: not drained {args.drain_timeout:.0f} s after the last drop "
                    f"(inbox {len(waiting)}, pending {pending}, commands awaiting {len(traffic.awaiting)})"
                )
            time.sleep(0.1)
        self.drained_at = time.monotonic()
        self.pickup.collect()

    def _digest_soon(self, daemon: Daemon) -> None:
        """Move ``digest_time`` to two minutes from now and reload the daemon (SIGHUP).

        The daily digest is the one step whose work grows with every open case, so it
        has to run inside the measured window, over the cases taken so far, whatever
        the hour the soak started (the site starts with ``digest_time = "23:59"``, so
        none went out before). A run that crosses midnight sends the next day's as well.
        """
        at = datetime.now(OSLO) + timedelta(minutes=2)
        self.digest_asked = self.traffic.fed
        if not WorkingCalendar().is_working_day(at.date()):
            self.digest_asked = -1  # no digest on a day off: nothing to move, nothing to check
            print("soak: not a working day in Oslo, so no daily digest in this run", file=sys.stderr)
            return
        text = _set(self.site.config.read_text(encoding="utf-8"), "digest_time", f'"{at:%H:%M}"')
        self.site.config.write_text(text, encoding="utf-8")
        os.kill(daemon.pid, signal.SIGHUP)
        moved = f"digest_time moved to {at:%H:%M} (Oslo) at {self.traffic.fed:,} fed"
        print(f"soak: {moved}; SIGHUP", file=sys.stderr)

    def _waiting(self) -> set[str]:
        with os.scandir(self.site.inbox) as entries:
            return {e.name for e in entries if not e.name.startswith(".")}

    def _taken(self, waiting: int) -> int:
        return self.traffic.fed - waiting

    def _drop(self, items: list[Item], now: float) -> None:
        if not items:
            return
        taken_before = self.traffic.fed - len(items) - len(self._waiting())
        for item in items:
            drop_file(self.site.inbox, item.name, item.data)
        self.waves.append(Wave([i.name for i in items], now, taken_before=taken_before))

    def _waves_done(self, waiting: set[str], now: float) -> None:
        for wave in self.waves:
            if wave.done_at is None and not any(name in waiting for name in wave.names):
                wave.done_at = now

    def _drained(self, db: Db) -> bool:
        sent_mail = db.scalar("SELECT count(*) FROM outbox WHERE status = 'sent' AND kind != 'notice'")
        sent_notices = db.scalar("SELECT count(*) FROM outbox WHERE status = 'sent' AND kind = 'notice'")
        return self.pickup.mail_files >= sent_mail and self.pickup.notice_sets >= sent_notices

    def _sample(
        self, daemon: Daemon, db: Db, *, pending: int | None = None, waiting: int | None = None
    ) -> None:
        status = proc_status(daemon.pid)
        if waiting is None:
            waiting = len(self._waiting())
        self.samples.append(
            Sample(
                t=time.monotonic() - self.t0,
                fed=self.traffic.fed,
                taken=self._taken(waiting),
                rss=status["VmRSS"],
                anon=status.get("RssAnon", 0),
                file=status.get("RssFile", 0) + status.get("RssShmem", 0),
                cpu=cpu_seconds(daemon.pid),
                pending=db.pending() if pending is None else pending,
                db_bytes=file_size(self.site.database),
                wal_bytes=file_size(self.site.database.with_name("russak.db-wal")),
                threads=status.get("Threads", 0),
            )
        )

    def _progress(self, waiting: int, pending: int) -> None:
        s = self.samples[-1] if self.samples else None
        rss = f"{s.rss / MIB:.1f} MiB" if s else "?"
        elapsed = time.monotonic() - self.t0
        taken = self._taken(waiting)
        print(
            f"soak: {elapsed:6.0f} s  fed {self.traffic.fed:,}/{self.args.messages:,}  taken {taken:,}  "
            f"inbox {waiting:,}  outbox pending {pending:,}  out {self.pickup.mail_files:,} mail "
            f"+ {self.pickup.notice_sets} notices  RSS {rss}  ({taken / max(elapsed, 1e-9):.0f} msg/s)",
            file=sys.stderr,
            flush=True,
        )

    # -- the end -------------------------------------------------------------------

    def _status(self) -> dict[str, Any]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway", "--config", str(self.site.config), "status", "--json"],
            capture_output=True,
            env=self.env,
            check=False,
        )
        parsed: dict[str, Any] = json.loads(done.stdout or b"{}")
        parsed["_exit"] = done.returncode
        return parsed

    def _stopped(self, code: int | None, seconds: float) -> None:
        self.result.add("SIGTERM to exit", f"exit code {code}, {seconds:.2f} s")
        self.result.check("daemon exits 0 within 10 s of SIGTERM", 0, code)

    def _checks(self, db: Db, status: dict[str, Any]) -> None:
        r, t, expect = self.result, self.traffic, self.traffic.expect
        outcomes = db.counts("SELECT outcome, count(*) FROM inbound_messages GROUP BY outcome")
        statuses = db.counts("SELECT status, count(*) FROM cases GROUP BY status")
        outbox = db.counts("SELECT kind || ':' || status, count(*) FROM outbox GROUP BY kind, status")
        r.check("messages fed", self.args.messages, t.fed)
        r.check("inbox empty at the end", 0, len(self._waiting()))
        r.check(
            "stored inbound messages (all fed but exact re-deliveries)",
            t.fed - expect["redelivered-bytes"],
            sum(outcomes.values()),
        )
        for outcome in sorted(
            {k.split(":", 1)[1] for k in expect if k.startswith("outcome:")} | set(outcomes)
        ):
            r.check(f"intake outcome {outcome}", expect[f"outcome:{outcome}"], outcomes[outcome])
        r.check("cases", expect["outcome:case"] + expect["outcome:letter"], sum(statuses.values()))
        for state in sorted({k.split(":", 1)[1] for k in expect if k.startswith("status:")} | set(statuses)):
            r.check(f"cases {state}", expect[f"status:{state}"], statuses[state])
        r.check(
            "quarantine entries", expect["outcome:quarantined"], db.scalar("SELECT count(*) FROM quarantine")
        )
        r.check(
            "changes still parked",
            0,
            db.scalar("SELECT count(*) FROM orders WHERE applied_at IS NULL AND message_type != 'ny'"),
        )
        r.check("outbox rows pending", 0, sum(n for k, n in outbox.items() if k.endswith(":pending")))
        r.check("outbox rows dead", 0, sum(n for k, n in outbox.items() if k.endswith(":dead")))
        sent_mail = sum(n for k, n in outbox.items() if k.endswith(":sent") and not k.startswith("notice:"))
        r.check("staff mails picked up = outbox mail rows sent", sent_mail, self.pickup.mail_files)
        r.check(
            "notice sets picked up = outbox notice rows sent", outbox["notice:sent"], self.pickup.notice_sets
        )
        r.check("notice sets expected", expect["notice-sets"], self.pickup.notice_sets)
        r.check("notice sets well-formed", 0, self.pickup.bad_notices)
        for kind in sorted(k.split(":", 1)[1] for k in expect if k.startswith("alert:")):
            r.check(f"staff mail {kind}", expect[f"alert:{kind}"], self.pickup.kinds[kind])
        if self.digest_asked is not None and self.digest_asked >= 0:
            digests = self.pickup.kinds["digest"]
            r.check("daily digests sent (the one moved into the run)", ">= 1", digests, ok=digests >= 1)
        r.check("staff commands rejected", 0, len(t.rejected))
        r.check("identity numbers in staff mail", 0, self.pickup.leaks)
        r.check("identity numbers in the daemon's log", 0, self._log_leaks())
        backlog = status.get("outbox", {})
        r.check(
            "russak status --json: outbox pending, dead",
            "0, 0",
            f"{backlog.get('pending')}, {backlog.get('dead')}",
        )
        r.check("russak status --json: daemon running", True, status.get("daemon", {}).get("running"))
        self.outbox_rows = outbox

    def _log_leaks(self) -> int:
        text = self.site.log.read_text(errors="replace")
        return sum(1 for found in ELEVEN_DIGITS.findall(text) if found in self.traffic.numbers)

    def _log_levels(self) -> Counter[str]:
        levels: Counter[str] = Counter()
        for line in self.site.log.read_text(errors="replace").splitlines():
            for level in ("WARNING", "ERROR", "CRITICAL"):
                if level in line:
                    levels[level] += 1
                    break
        return levels

    # -- the figures -------------------------------------------------------------

    def _point(self, taken: float) -> Sample:
        return next((s for s in self.samples if s.taken >= taken), self.samples[-1])

    def _figures(self) -> None:
        r, args, t = self.result, self.args, self.traffic
        samples = self.samples
        warm = self._point(self.warmup)
        after = [s for s in samples if s.t >= warm.t]
        last = samples[-1]
        r.points.append((f"warm-up ({self.warmup:,} taken)", warm))
        for share in (0.25, 0.5, 0.75):
            r.points.append((f"{share:.0%}", self._point(share * args.messages)))
        r.points.append(("100 % (drained)", last))
        high = max(after, key=lambda s: s.rss)
        low = min(after, key=lambda s: s.rss)
        r.points.append(("max after warm-up", high))
        spread = (high.rss - low.rss) / MIB
        wall = self.drained_at - self.t0
        feed = (self.feed_end or self.drained_at) - self.t0
        mix = ", ".join(f"{label} {n:,}" for label, n in t.labels.most_common())
        r.add("messages fed", f"{t.fed:,} in {len(self.waves):,} waves of up to {args.wave:,}: {mix}")
        r.add("wall time", f"{wall:,.0f} s ({wall / 60:.1f} min; the last wave dropped at {feed:,.0f} s)")
        rates = self._wave_rates(warm.taken)
        quartiles = statistics.quantiles(rates, n=4) if len(rates) >= 2 else []
        if rates:
            r.add(
                "intake, median over waves after warm-up",
                f"{statistics.median(rates):.1f} messages/s over {len(rates)} waves"
                + (f", quartiles {quartiles[0]:.1f}–{quartiles[2]:.1f}" if quartiles else ""),
            )
        r.add("end to end, all messages", f"{t.fed / wall:.1f} messages/s")
        out = self.pickup.mail_files + self.pickup.notice_sets
        kinds = ", ".join(f"{k} {n:,}" for k, n in self.pickup.kinds.most_common())
        r.add(
            "out: staff mails + notice sets",
            f"{self.pickup.mail_files:,} + {self.pickup.notice_sets:,} ({kinds})",
        )
        r.add("out, per second", f"{out / wall:.1f}")
        cpu = last.cpu - samples[0].cpu
        r.add(
            "daemon CPU (utime + stime)",
            f"{cpu:,.0f} s, {1000 * cpu / t.fed:.1f} ms per message, {100 * cpu / wall:.0f} % of one core",
        )
        mine = resource.getrusage(resource.RUSAGE_SELF)
        r.add("this script's CPU (feeding, pickup, checks)", f"{mine.ru_utime + mine.ru_stime:,.0f} s")
        r.add("RSS at warm-up -> end", f"{warm.rss / MIB:.1f} -> {last.rss / MIB:.1f} MiB")
        r.add(
            "RSS after warm-up: min, max, spread",
            f"{low.rss / MIB:.1f}, {high.rss / MIB:.1f}, {spread:.1f} MiB (bound {args.rss_slack_mib:g} MiB)",
        )
        slope = self._slope(after)
        if slope is not None:
            r.add("RSS trend after warm-up (least squares)", f"{slope:+.2f} MiB per 10,000 messages")
        r.add(
            "RssAnon / RssFile at warm-up -> end",
            f"{warm.anon / MIB:.1f} / {warm.file / MIB:.1f} -> "
            f"{last.anon / MIB:.1f} / {last.file / MIB:.1f} MiB",
        )
        r.add(
            "database file at the end; largest WAL sampled",
            f"{last.db_bytes / MIB / MIB:,.0f} MiB; {max(s.wal_bytes for s in samples) / MIB / MIB:.1f} MiB",
        )
        r.add("threads", ", ".join(str(n) for n in sorted({s.threads for s in samples})))
        r.add("outbox pending, max sampled", f"{max(s.pending for s in samples):,}")
        levels = self._log_levels()
        r.add(
            "daemon log",
            f"{file_size(self.site.log) / MIB / MIB:,.0f} MiB; "
            + (", ".join(f"{n:,} {lvl}" for lvl, n in levels.items()) or "no warnings or errors"),
        )
        flat = spread <= args.rss_slack_mib
        r.add("flat within the bound", "PASS" if flat else "FAIL")
        self.result.passed &= flat

    def _wave_rates(self, warm_taken: int) -> list[float]:
        """Messages per second of each wave: its size over the time since the wave before
        it was taken in (the daemon is never idle, since the next wave waits in the inbox)."""
        done = sorted((w for w in self.waves if w.done_at is not None), key=lambda w: w.done_at or 0)
        rates = []
        for before, wave in itertools.pairwise(done):
            assert wave.done_at is not None and before.done_at is not None
            if wave.taken_before >= warm_taken and wave.done_at > before.done_at and len(wave.names) > 1:
                rates.append(len(wave.names) / (wave.done_at - before.done_at))
        return rates

    @staticmethod
    def _slope(samples: list[Sample]) -> float | None:
        if len(samples) < 3 or samples[-1].taken == samples[0].taken:
            return None
        xs = [s.taken / 10_000 for s in samples]
        ys = [s.rss / MIB for s in samples]
        mx, my = statistics.fmean(xs), statistics.fmean(ys)
        sxx = sum((x - mx) ** 2 for x in xs)
        return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx else None

    def _log_checks(self) -> None:
        failed = [c for c in self.result.checks if not c[3]]
        print(
            f"soak: {len(self.result.checks) - len(failed)} of {len(self.result.checks)} checks passed",
            file=sys.stderr,
        )

    def _trace(self) -> None:
        """What the wrapper found at warm-up and at the end: Python's objects and blocks,
        glibc's heap (in use and free, all arenas), and with tracemalloc the growth by line."""
        first, last = (json.loads(p.read_text()) for p in self.snapshots)

        def mib(key: str) -> str:
            return f"{first[key] / MIB / MIB:.1f} -> {last[key] / MIB / MIB:.1f} MiB"

        self.result.add(
            "GC-tracked objects, pymalloc blocks at warm-up -> end",
            f"{first['objects']:,} -> {last['objects']:,}; {first['blocks']:,} -> {last['blocks']:,}",
        )
        self.result.add(
            "pymalloc arenas (1 MiB each); bytes in used, free blocks",
            f"{first['arenas']} -> {last['arenas']}; {mib('pyblocks')}, {mib('pyfree')}",
        )
        self.result.add("glibc heap in use (mallinfo2 uordblks)", mib("uordblks"))
        self.result.add("glibc heap free, kept (fordblks)", mib("fordblks"))
        self.result.add(
            "glibc heap from sbrk + mmap (arena + hblkhd)",
            (
                f"{(first['arena'] + first['hblkhd']) / MIB / MIB:.1f} -> "
                f"{(last['arena'] + last['hblkhd']) / MIB / MIB:.1f} MiB"
            ),
        )
        if "traced" not in first:
            return
        import tracemalloc

        self.result.add("tracemalloc: traced memory", mib("traced"))
        before, after = (
            tracemalloc.Snapshot.load(str(p.with_suffix(".tracemalloc"))) for p in self.snapshots
        )
        filters = [tracemalloc.Filter(False, tracemalloc.__file__)]
        stats = after.filter_traces(filters).compare_to(before.filter_traces(filters), "lineno")
        for stat in stats[:12]:
            frame = stat.traceback[0]
            where = f"{'/'.join(Path(frame.filename).parts[-2:])}:{frame.lineno}"
            self.result.add(
                f"tracemalloc growth {where}",
                f"{stat.size_diff / MIB:+,.0f} KiB, {stat.count_diff:+,} blocks",
            )


# -- output --------------------------------------------------------------------------


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{os.cpu_count()} CPUs ({platform.machine()}), {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, SQLite {sqlite3.sqlite_version}, "
        f"load average at the start {load[0]:.2f}"
    )


def render(result: Result, markdown: bool) -> str:
    head = (
        "point",
        "messages taken",
        "VmRSS MiB",
        "RssAnon MiB",
        "RssFile MiB",
        "daemon CPU s",
        "database MiB",
    )

    def cells(label: str, s: Sample) -> tuple[str, ...]:
        return (
            label,
            f"{s.taken:,}",
            f"{s.rss / MIB:.1f}",
            f"{s.anon / MIB:.1f}",
            f"{s.file / MIB:.1f}",
            f"{s.cpu:,.0f}",
            f"{s.db_bytes / MIB / MIB:,.0f}",
        )

    points = [cells(label, s) for label, s in result.points]
    verdict = f"{sum(c[3] for c in result.checks)} of {len(result.checks)} checks passed"
    if markdown:
        lines = ["| measure | value |", "|---|---|"]
        lines += [f"| {m} | {v} |" for m, v in result.rows]
        lines += ["", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        lines += ["| " + " | ".join(row) + " |" for row in points]
        lines += ["", f"Checks: {verdict}.", "", "| check | expected | seen | |", "|---|---|---|---|"]
        lines += [f"| {w} | {e} | {s} | {'ok' if ok else 'FAILED'} |" for w, e, s, ok in result.checks]
        return "\n".join(lines)
    width = max(len(m) for m, _ in result.rows)
    lines = [f"{m:<{width}}  {v}" for m, v in result.rows]
    widths = [max(len(r[i]) for r in [head, *points]) for i in range(len(head))]
    lines += ["", "  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in points]
    lines += ["", f"checks: {verdict}"]
    lines += [
        f"  {'ok    ' if ok else 'FAILED'}  {w}: expected {e}, saw {s}" for w, e, s, ok in result.checks
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--messages", type=int, default=100_000, help="messages to feed (default 100000)")
    parser.add_argument("--wave", type=int, default=200, help="messages per wave (default 200)")
    parser.add_argument("--max-inbox", type=int, default=400, help="most files waiting in the inbox")
    parser.add_argument("--max-pending", type=int, default=400, help="most outbox rows waiting to be sent")
    parser.add_argument("--warmup", type=int, default=None, help="messages before warm-up ends")
    parser.add_argument("--sample-seconds", type=float, default=2.0, help="RSS and CPU sampling interval")
    parser.add_argument("--rss-slack-mib", type=float, default=8.0, help="allowed RSS spread after warm-up")
    parser.add_argument("--poll-seconds", type=float, default=1.0, help="poll_interval_seconds for the soak")
    parser.add_argument("--tick-seconds", type=float, default=1.0, help="tick_interval_seconds for the soak")
    parser.add_argument(
        "--meeting-delay", type=float, default=90.0, help="seconds from INNKALT to the meeting"
    )
    parser.add_argument(
        "--digest-at", type=float, default=0.5, help="share fed when the daily digest is moved to now"
    )
    parser.add_argument("--drain-timeout", type=float, default=900.0, help="seconds to wait for the drain")
    parser.add_argument("--seed", type=int, default=8, help="seed of the mix")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary site goes")
    parser.add_argument("--keep", action="store_true", help="keep the site (database, spool, daemon log)")
    parser.add_argument("--trace-memory", action="store_true", help="tracemalloc in the daemon (slow)")
    parser.add_argument("--trace-frames", type=int, default=1, help="frames per traced allocation")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    args = parser.parse_args(argv)
    if args.messages < 100:
        parser.error("--messages: at least 100")
    print(f"soak: {machine()}", file=sys.stderr)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the daemon is stopped and cleaned up too
    base = Path(tempfile.mkdtemp(prefix="russak-soak-", dir=args.dir))
    try:
        result = Soak(args, base).run()
    finally:
        if args.keep:
            print(f"soak: kept {base}", file=sys.stderr)
        else:
            shutil.rmtree(base, ignore_errors=True)
    print(machine())
    print(render(result, args.markdown))
    return 0 if result.passed else 1


if __name__ == "__main__":
    sys.exit(main())
