"""``russak migrate --to`` and ``--show``: a real rollback path, tried on a database full
of data, on each backend (#8).

The stairway in ``test_migrations.py`` runs on empty tables, so it could not see that a
SQLite migration which copies a table (Alembic's batch mode) with foreign keys on
deletes every row pointing at it: persons, meetings, notices, quarantine. Here every
table holds rows first, and each row must come back from a downgrade and the upgrade
after it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from gateway import cases, db
from gateway.app import open_gateway
from gateway.clock import SimulatedClock, local_today
from gateway.config import load_settings
from gateway.context import Gateway, host_name
from gateway.delivery import outbox
from gateway.domain.closing import parse_close_reason
from gateway.intake import pipeline as intake
from gateway.models import Base, Case, CaseStatistic, Cursor, IntakeAttempt, Lease, OutboxItem
from gateway.ops import exitcodes
from gateway.ports import RawMessage
from gateway.staff import reminders
from gateway.staff.commands import Command, perform
from tests import factories
from tests.conftest import build_gateway
from tests.test_cli import Ran, invoke

# What undoing 0003 drops (gateway.db.DOWNGRADE_LOSES["0003"]); every other column of
# every other table must survive the downgrade and the upgrade after it.
DROPPED_BY_0003 = {"cases": {"uid", "close_comment"}, "inbound_messages": {"dedupe_key"}}
TABLES_OF_0003 = {"intake_attempts"}
OVERDUE_SUMMONS = "case:%:summons-overdue:%"


def _take(gw: Gateway, data: bytes, kind: str = "email") -> intake.IntakeResult:
    external = "sha256:" + hashlib.sha256(data).hexdigest()
    return intake.process(gw, RawMessage("spool", external, data, kind, gw.clock.now()))  # type: ignore[arg-type]


def _fill(gw: Gateway, clock: SimulatedClock) -> None:
    """A row in every table: a minor's case with guardians, a meeting and summons, a
    no-show by staff mail, a test, a notice sent, a close comment; a second case left
    unsummoned, so a reminder is due; a police letter; quarantine; and the tables no
    routine fills in a day (statistics, cursors, intake attempts, leases)."""
    minor = factories.order_xml(guardians=2, tests=1, birth=date(2009, 2, 3))
    assert _take(gw, minor, "xml").outcome == "case"
    with gw.session() as s:
        (number,) = s.scalars(select(Case.number)).all()
    meeting = local_today(clock.now()) + timedelta(days=2)
    with gw.session() as s:
        booked = Command("summoned", on=meeting, place="Kontoret")
        perform(gw, s, cases.get_case(s, number), booked, factories.STAFF)
    clock.advance(timedelta(days=3))
    assert _take(gw, factories.mail(subject=f"[{number}] IKKE MØTT", body="IKKE MØTT")).outcome == "command"
    with gw.session() as s:
        case = cases.get_case(s, number)
        perform(gw, s, case, Command("test-taken", on=local_today(clock.now())), factories.STAFF)
        perform(gw, s, case, Command("send-notice"), factories.STAFF)
    assert outbox.dispatch_due(gw).sent
    with gw.session() as s:
        cases.close(gw, s, cases.get_case(s, number), parse_close_reason("annet flyttet hjem"), "cli:x")
    second = factories.order_xml(national_id=factories.fnr(start=200), case_reference="24817396")
    assert _take(gw, second, "xml").outcome == "case"
    letter = factories.mail(sender=factories.POLICE_SENDER, subject="Brev", body="Gjelder en sak")
    assert _take(gw, letter).outcome == "letter"
    assert _take(gw, b"<x/>", "xml").outcome == "quarantined"
    clock.advance(timedelta(days=30))  # the second case's first meeting is overdue now
    assert reminders.tick(gw).reminders
    now = clock.now()
    with gw.session() as s:
        s.add(CaseStatistic(unit_code="testdal", kommunenummer=factories.KOMMUNE, reaction=None, minor=False,
                            opened_month="2026-01", ended_month="2026-03", final_status="closed",
                            attendances=1, no_shows=0, tests_taken=0, tests_missed=0, notices_sent=0,
                            days_to_first_meeting=5, purged_at=now))  # fmt: skip
        s.add(Cursor(channel="spool", key="watermark", value="42", updated_at=now))
        s.add(IntakeAttempt(channel="spool", external_id="sha256:feed", attempts=1, last_at=now))
        s.add(Lease(name="poll:spool", owner=gw.instance_id, until=now + timedelta(minutes=5)))


def _rows(engine: Engine) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every table 0002 has, in the columns 0002 has, read as stored."""
    found: dict[str, list[tuple[Any, ...]]] = {}
    with engine.connect() as conn:
        for table in Base.metadata.sorted_tables:
            if table.name in TABLES_OF_0003:
                continue
            kept = [c for c in table.columns if c.name not in DROPPED_BY_0003.get(table.name, ())]
            query = select(*(c.label(c.name) for c in kept)).order_by(*table.primary_key.columns)
            found[table.name] = [tuple(row) for row in conn.execute(query)]
    return found


def _engine(gw_or_url: Gateway | str) -> Engine:
    return db.make_engine(gw_or_url if isinstance(gw_or_url, str) else gw_or_url.settings.database_url())


@pytest.fixture
def filled(gw: Gateway, clock: SimulatedClock) -> Iterator[tuple[Path, str]]:
    """A filled database (closed gateway) and its config: (config path, database URL)."""
    _fill(gw, clock)
    config, url = gw.settings.source, gw.settings.database_url()
    gw.close()
    assert config is not None
    yield config, url


def _site(tmp_path: Path, url: str, clock: SimulatedClock, *, lease_owner: str | None = None) -> Path:
    """A migrated site (closed), its config path; with ``lease_owner``, a live-looking instance lease."""
    gw = build_gateway(tmp_path / "gw", url, clock)
    config = gw.settings.source
    if lease_owner is not None:
        with gw.session() as s:
            s.add(Lease(name="instance", owner=lease_owner, until=clock.now() + timedelta(minutes=5)))
    gw.close()
    assert config is not None
    return config


def _russak(clock: SimulatedClock, config: Path, *args: str) -> Ran:
    return invoke(clock, config, *args)


def test_every_revision_says_what_undoing_it_loses() -> None:
    assert set(db.DOWNGRADE_LOSES) == {r.id for r in db.known_revisions()}
    assert [r.id for r in db.known_revisions()][-1] == db.SCHEMA_HEAD


def test_down_to_the_previous_revision_and_up_again_keeps_every_row(
    filled: tuple[Path, str], clock: SimulatedClock
) -> None:
    config, url = filled
    engine = _engine(url)
    try:
        before = _rows(engine)
        empty = sorted(name for name, rows in before.items() if not rows)
        assert empty == [], f"the test put no rows in {empty}"
        with engine.connect() as conn:
            summons_reminders = conn.scalar(
                select(func.count()).select_from(OutboxItem).where(OutboxItem.key.like(OVERDUE_SUMMONS))
            )
        assert summons_reminders  # the unsummoned case and the letter: their first meeting is late

        refused = _russak(clock, config, "migrate", "--to", "0002")
        assert refused.returncode == 1 and "--yes" in refused.stderr
        assert "loses: drops each case's UUID" in refused.stdout
        assert db.current_revision(engine) == "0003"

        down = _russak(clock, config, "migrate", "--to", "0002", "--yes")
        assert down.returncode == 0, down.stderr
        assert down.stdout.splitlines()[-1] == "database schema downgraded from 0003 to 0002"
        assert db.current_revision(engine) == "0002"
        assert _rows(engine) == before

        old = _russak(clock, config, "cases")
        assert old.returncode == 2 and "russak migrate" in old.stderr  # this version wants 0003

        up = _russak(clock, config, "migrate")
        assert up.returncode == 0, up.stderr
        assert up.stdout.strip() == "database schema migrated from 0002 to 0003"
        # 0003's upgrade runs again and clears the detail of "closed" audit entries (as
        # DOWNGRADE_LOSES says); the case itself keeps its close reason.
        again = _rows(engine)
        assert again.pop("audit") == [
            (*row[:5], None) if row[4] == "closed" else row for row in before["audit"]
        ]
        assert any(row[4] == "closed" and row[5] for row in before.pop("audit"))
        assert again == before
    finally:
        engine.dispose()

    gw = open_gateway(load_settings(config), clock=clock)
    try:
        with gw.session() as s:
            shown = [(c.number, c.person.first_name if c.person else None) for c in s.scalars(select(Case))]
            assert all(uid for uid in s.scalars(select(Case.uid)))
        assert ("RUS-2026-0001", "Ola") in shown  # decrypts: the key check came through too
        # What DOWNGRADE_LOSES says: new UUIDs, so a reminder due now is mailed once more.
        assert reminders.tick(gw).reminders >= summons_reminders
        with gw.session() as s:
            keys = s.scalars(select(OutboxItem.key).where(OutboxItem.key.like(OVERDUE_SUMMONS))).all()
        assert len(keys) == 2 * summons_reminders
    finally:
        gw.close()


def test_a_downgrade_needs_yes_and_json_says_what_it_would_undo(
    filled: tuple[Path, str], clock: SimulatedClock
) -> None:
    config, url = filled
    ran = _russak(clock, config, "migrate", "--to", "0001", "--json")
    assert ran.returncode == 1 and ran.stderr.startswith("russak: downgrade from 0003 to 0001 not done")
    report = json.loads(ran.stdout)
    assert report["migrated"] is False and report["from"] == report["to"] == "0003"
    assert report["direction"] == "downgrade"
    assert [step["revision"] for step in report["undone"]] == ["0003", "0002"]  # in the order undone
    assert report["undone"][1]["loses"] == db.DOWNGRADE_LOSES["0002"]
    engine = _engine(url)
    try:
        assert db.current_revision(engine) == "0003"
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("owner", "refused"),
    [
        ("other-host:4242:0a1b2c3d", True),  # another machine: its lease time is trusted
        (f"{host_name()}:1:0a1b2c3d", True),  # a live process here (pid 1)
        (f"{host_name()}:999999999:0a1b2c3d", False),  # a process here that is gone
    ],
)
def test_a_change_is_refused_while_a_gateway_holds_the_database(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock, owner: str, refused: bool
) -> None:
    config = _site(tmp_path, sqlite_only_url, clock, lease_owner=owner)
    ran = _russak(clock, config, "migrate", "--to", "0002", "--yes")
    if refused:
        assert ran.returncode == 1
        assert ran.stderr.startswith(f"russak: a gateway holds this database (instance lease of {owner}")
        assert "stop every daemon first" in ran.stderr and ran.stdout == ""
    else:
        assert ran.returncode == 0, ran.stderr
    clock.advance(timedelta(minutes=6))  # the lease ran out: the daemon is gone
    assert _russak(clock, config, "migrate").returncode == 0
    # no change to make: nothing to refuse, even while a gateway runs
    with open_gateway(load_settings(config), clock=clock).session() as s:
        s.merge(Lease(name="instance", owner="other-host:1:x", until=clock.now() + timedelta(minutes=5)))
    assert _russak(clock, config, "migrate").stdout.strip() == "database schema already current (0003)"


def test_show_names_the_revisions_and_changes_nothing(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock
) -> None:
    config = _site(tmp_path, sqlite_only_url, clock)
    assert _russak(clock, config, "migrate", "--to", "0002", "--yes").returncode == 0
    shown = _russak(clock, config, "migrate", "--show")
    assert shown.returncode == 0
    lines = shown.stdout.splitlines()
    assert lines[0] == "database schema: 0002 (older: russak migrate upgrades it)"
    assert lines[1] == "this version's schema (head): 0003"
    assert [line.split()[:2] for line in lines[2:]] == [
        ["0001", "applied"],
        ["0002", "applied"],
        ["0003", "not"],
    ]
    data = json.loads(_russak(clock, config, "migrate", "--show", "--json").stdout)
    assert (data["current"], data["head"], data["known"]) == ("0002", "0003", True)
    assert [r["applied"] for r in data["revisions"]] == [True, True, False]
    engine = _engine(sqlite_only_url)
    try:
        assert db.current_revision(engine) == "0002"
    finally:
        engine.dispose()
    at = _russak(clock, config, "migrate", "--to", "0002")
    assert at.stdout.strip() == "database schema already at 0002 (this version's head: 0003)"
    up = _russak(clock, config, "migrate", "--to", "0003", "--json")
    assert json.loads(up.stdout)["direction"] == "upgrade" and up.returncode == 0


def test_unknown_revisions_base_and_a_newer_database_exit_2(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock
) -> None:
    config = _site(tmp_path, sqlite_only_url, clock)
    typo = _russak(clock, config, "migrate", "--to", "0009")
    assert (
        typo.returncode == 2 and "unknown revision '0009'; this version knows 0001, 0002, 0003" in typo.stderr
    )
    base = _russak(clock, config, "migrate", "--to", "base", "--yes")
    assert base.returncode == 2 and "drop every table" in base.stderr
    engine = _engine(sqlite_only_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("UPDATE alembic_version SET version_num = '0099'")
    finally:
        engine.dispose()
    newer = _russak(clock, config, "migrate")
    assert newer.returncode == 2 and "newer than this version (head 0003)" in newer.stderr
    assert "Traceback" not in newer.stderr
    shown = _russak(clock, config, "migrate", "--show")
    assert shown.returncode == 0 and shown.stdout.startswith("database schema: 0099 (newer than this version")
    daemon = _russak(clock, config, "run")  # migrates on start: refused, and systemd does not restart it
    assert daemon.returncode == exitcodes.EXIT_SCHEMA
    assert daemon.stderr.startswith("russak: the database schema 0099 is newer than this version (head 0003)")
    once = _russak(clock, config, "run", "--once")  # one line and exit 2, not a traceback
    assert once.returncode == 2 and "newer than this version (head 0003)" in once.stderr
    assert "Traceback" not in once.stderr


def test_sqlite_migrations_leave_foreign_keys_on(tmp_path: Path) -> None:
    """The migration turns them off on its own connection only, and back on after."""
    engine = db.make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    try:
        db.migrate_to(engine, "0002")
        db.migrate_to(engine, "head")
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    finally:
        engine.dispose()


def test_run_does_not_upgrade_the_schema_under_a_live_gateway(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock
) -> None:
    """``run`` migrates before it can take its instance lease: a newer version started
    beside a running older one must refuse before it touches the schema."""
    config = _site(tmp_path, sqlite_only_url, clock, lease_owner="other-host:4242:0a1b2c3d")
    engine = _engine(sqlite_only_url)
    try:
        db.migrate_to(engine, "0002")  # the running, older gateway's schema
    finally:
        engine.dispose()
    ran = _russak(clock, config, "run", "--once")
    assert ran.returncode == 1
    assert "a gateway holds this database (instance lease of other-host:4242" in ran.stderr
    assert "on schema 0002" in ran.stderr
    assert _revision(sqlite_only_url) == "0002"  # untouched
    clock.advance(timedelta(minutes=6))  # the old gateway stopped; its lease ran out
    assert _russak(clock, config, "run", "--once").returncode in (0, 1), "runs, and upgrades"
    assert _revision(sqlite_only_url) == db.SCHEMA_HEAD


def _revision(url: str) -> str | None:
    engine = _engine(url)
    try:
        return db.current_revision(engine)
    finally:
        engine.dispose()
