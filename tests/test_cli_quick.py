"""``russak cases`` through sqlite3 (``gateway.cli.quick``): the same lines as the ORM
path, the same query, and the ORM path whenever the quick one cannot be sure (#8)."""

from __future__ import annotations

import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from sqlalchemy.dialects import sqlite

from gateway.cli import cases as cases_cli
from gateway.cli import quick
from gateway.clock import SimulatedClock, local_today
from gateway.config import load_settings
from gateway.domain.facts import Status
from gateway.schema_head import SCHEMA_HEAD
from tests import factories
from tests.test_cli import NUMBER, Russak
from tests.test_cli_json import _ingest


def _database(cfg: Path) -> Path:
    path = quick.sqlite_path(load_settings(cfg).database_url())
    assert path is not None
    return path


def _orm_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(quick, "case_lines", lambda settings, status: None)


def test_the_sql_is_sqlalchemy_s_compilation_of_the_listing_query() -> None:
    dialect = sqlite.dialect()
    compiled = str(cases_cli.summary_query(None, cases_cli.LINE_COLUMNS).compile(dialect=dialect))
    assert compiled == quick.LIST_SQL
    by_status = cases_cli.summary_query("summoned", cases_cli.LINE_COLUMNS).compile(dialect=dialect)
    assert str(by_status) == quick.LIST_BY_STATUS_SQL
    assert list(by_status.params) == ["status_1"]  # the one placeholder, the status


def test_every_listing_is_the_same_through_sqlite3_and_through_the_orm(
    cfg: Path, tmp_path: Path, russak: Russak, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # cases in four states, with and without an attendance deadline, one with no reference
    orders = [
        factories.order_xml(national_id=factories.fnr(date(1990, 5, 17)), case_reference="11111111"),
        factories.order_xml(national_id=factories.fnr(date(1991, 6, 18)), attendance_deadline=None),
        factories.order_xml(national_id=factories.fnr(date(1992, 7, 19)), case_reference="33333333"),
        factories.order_xml(national_id=factories.fnr(date(1993, 8, 20)), case_reference="44444444"),
    ]
    for i, order in enumerate(orders):
        assert _ingest(russak, cfg, tmp_path, f"o{i}.xml", order).returncode == 0
    meeting = local_today(clock.now()) + timedelta(days=3)
    number = NUMBER[:-1]
    summoned = russak(
        cfg, "record", f"{number}2", "summoned", "--date", meeting.isoformat(), "--time", "10:00"
    )
    assert summoned.returncode == 0, summoned.stderr
    assert russak(cfg, "record", f"{number}3", "close", "--reason", "flyttet").returncode == 0
    today = local_today(clock.now()).isoformat()
    assert russak(cfg, "record", f"{number}4", "attended", "--date", today).returncode == 0

    used: list[int] = []
    real = quick.case_lines

    def spy(settings: object, status: str | None) -> object:
        lines = real(settings, status)  # type: ignore[arg-type]
        used.append(0 if lines is None else 1)
        return lines

    monkeypatch.setattr(quick, "case_lines", spy)
    filters: list[tuple[str, ...]] = [(), *(("--status", s.value) for s in Status)]
    fast = [russak(cfg, "cases", *f) for f in filters]
    assert used == [1] * len(filters), "every listing went through sqlite3"
    _orm_only(monkeypatch)
    slow = [russak(cfg, "cases", *f) for f in filters]
    for f, a, b in zip(filters, fast, slow, strict=True):
        assert (a.returncode, a.stdout) == (b.returncode, b.stdout), f
    assert len(fast[0].stdout.splitlines()) == 4
    statuses = {line.split()[1] for line in fast[0].stdout.splitlines()}
    assert statuses == {"awaiting_summons", "summoned", "closed", "fulfilled"}, fast[0].stdout
    assert "deadline=2027-03-01" in fast[0].stdout and "ref=33333333" in fast[0].stdout
    assert fast[1 + [s.value for s in Status].index("withdrawn")].stdout.strip() == "no cases"


def test_the_orm_path_takes_over_when_the_quick_one_cannot_be_sure(
    cfg: Path, tmp_path: Path, russak: Russak
) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0
    settings = load_settings(cfg)
    path = _database(cfg)
    assert quick.case_lines(settings, None) is not None

    with sqlite3.connect(path) as conn:  # no key check stored yet: the ORM path stores it
        conn.execute("DELETE FROM gateway_meta WHERE name = 'key-check'")
    assert quick.case_lines(settings, None) is None
    assert russak(cfg, "cases").returncode == 0
    assert quick.case_lines(settings, None) is not None

    with sqlite3.connect(path) as conn:  # a schema of another revision: the ORM path refuses it
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    assert quick.case_lines(settings, None) is None
    old = russak(cfg, "cases")
    assert old.returncode == 2 and "russak migrate" in old.stderr
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = ?", (SCHEMA_HEAD,))
        conn.execute("UPDATE cases SET condition_end = 'not a date', attendance_deadline = NULL")
    assert quick.case_lines(settings, None) is None  # a value it cannot read as the ORM would

    path.rename(tmp_path / "elsewhere.db")
    assert quick.case_lines(settings, None) is None  # no database: the ORM path says so


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("sqlite:////var/lib/russak/russak.db", Path("/var/lib/russak/russak.db")),
        ("sqlite:///file:/var/lib/russak/russak.db?mode=ro&uri=true", None),
        ("sqlite:////var/lib/russak/russak.db?timeout=5", None),
        ("sqlite://", None),
        ("postgresql+psycopg://russak@db.example/russak", None),
    ],
)
def test_only_a_plain_sqlite_file_goes_the_quick_way(url: str, expected: Path | None) -> None:
    assert quick.sqlite_path(url) == expected


def test_a_schema_of_another_revision_is_named_with_what_to_do(
    cfg: Path, tmp_path: Path, russak: Russak
) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0
    path = _database(cfg)
    with sqlite3.connect(path) as conn:  # what a newer version would leave behind
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    newer = russak(cfg, "cases")
    assert newer.returncode == 2 and len(newer.stderr.strip().splitlines()) == 1
    assert "revision 0099" in newer.stderr and f"migrate --to {SCHEMA_HEAD}" in newer.stderr
    assert "run `russak migrate`" not in newer.stderr  # that would be the wrong advice here
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0002'")
    older = russak(cfg, "cases")
    assert (
        older.returncode == 2 and "revision 0002" in older.stderr and "run `russak migrate`" in older.stderr
    )
    path.unlink()
    path.touch()  # an empty file: no schema at all
    empty = russak(cfg, "cases")
    assert empty.returncode == 2 and "no schema yet; run `russak migrate`" in empty.stderr
