"""A message that kills the process cannot loop the daemon; a full disk gets one clear
line, no false "opened" lines, and loses nothing (issue #11)."""

from __future__ import annotations

import hashlib
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import event, select

from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import load_settings
from gateway.intake import pipeline as intake
from gateway.models import Case, InboundMessage, IntakeAttempt, QuarantineEntry
from gateway.ports import RawMessage
from tests import factories

MAX_ATTEMPTS = 3  # the default of gateway.max_intake_attempts

KILLER = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime
    from gateway.app import open_gateway
    from gateway.clock import SimulatedClock
    from gateway.config import load_settings
    from gateway.intake import pipeline
    from gateway.ports import RawMessage

    def die(*args, **kwargs):
        os._exit(137)  # what the kernel's OOM killer leaves behind: no cleanup at all

    pipeline._judge = die
    from pathlib import Path
    clock = SimulatedClock(datetime(2027, 1, 4, 9, tzinfo=UTC))
    gw = open_gateway(load_settings(Path(sys.argv[1])), clock=clock)
    data = open(sys.argv[2], "rb").read()
    pipeline.process(gw, RawMessage("spool", "sha256:poison", data, "email", gw.clock.now()))
    """
)


def test_a_message_that_kills_the_process_is_quarantined_after_three_crashes(
    tmp_path: Path, clock: SimulatedClock
) -> None:
    cfg = factories.write_config(tmp_path / "gw", database=f"sqlite:///{tmp_path / 'gw' / 'russak.db'}")
    open_gateway(load_settings(cfg), clock=clock, migrate=True).close()
    poison = tmp_path / "poison.eml"
    poison.write_bytes(factories.mail(subject="Hei", body="x"))
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    for _ in range(MAX_ATTEMPTS):
        command = [sys.executable, str(script), str(cfg), str(poison)]
        done = subprocess.run(command, timeout=60, capture_output=True, text=True)
        assert done.returncode == 137, done.stderr
    gw = open_gateway(load_settings(cfg), clock=clock)
    try:
        with gw.session() as s:
            assert s.scalars(select(IntakeAttempt.attempts)).all() == [MAX_ATTEMPTS]
        message = RawMessage("spool", "sha256:poison", poison.read_bytes(), "email", clock.now())
        result = intake.process(gw, message)
        assert result.outcome == "quarantined"
        assert result.reason == f"crashed the gateway {MAX_ATTEMPTS} times"
        with gw.session() as s:
            assert s.scalars(select(QuarantineEntry.reason)).all() == [result.reason]
            assert s.scalars(select(IntakeAttempt)).all() == []
        # the next poll sees it as taken in: it is acknowledged, not read again
        assert intake.process(gw, message).outcome == "duplicate"
    finally:
        gw.close()


def test_a_normal_message_leaves_no_attempt_behind(gw_sqlite) -> None:  # type: ignore[no-untyped-def]
    data = factories.order_xml()
    result = intake.process(gw_sqlite, RawMessage("spool", "sha256:x", data, "xml", gw_sqlite.clock.now()))
    assert result.outcome == "case"
    with gw_sqlite.session() as s:
        assert s.scalars(select(IntakeAttempt)).all() == []


def test_a_full_database_pauses_intake_with_one_line_and_loses_nothing(
    gw_sqlite, caplog: pytest.LogCaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    gw = gw_sqlite
    full = {"on": True}

    @event.listens_for(gw.engine, "begin")
    def _cap(conn) -> None:  # type: ignore[no-untyped-def]
        if full["on"]:
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")
        else:
            conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")

    orders = [factories.order_xml(case_reference=f"2481{n:04d}") for n in range(20)]
    messages = [
        RawMessage("spool", "sha256:" + hashlib.sha256(o).hexdigest(), o, "xml", gw.clock.now())
        for o in orders
    ]
    caplog.set_level(logging.INFO, logger="gateway")
    results = [intake.process(gw, m) for m in messages]
    failed = [r for r in results if r.outcome == "error"]
    assert len(failed) >= 15 and {r.outcome for r in results} <= {"case", "error"}
    assert all("storage full" in (r.reason or "") for r in failed)
    with gw.session() as s:  # what was reported as taken in really is committed
        assert len(s.scalars(select(Case)).all()) == len(results) - len(failed)
    storage_lines = [r for r in caplog.records if "storage full" in r.getMessage()]
    assert len(storage_lines) <= 1, "one line, not one per message"
    opened = [r for r in caplog.records if "opened" in r.getMessage()]
    assert len(opened) == len(results) - len(failed), "no 'opened' line for a rolled-back case"
    assert not [r for r in caplog.records if "internal error" in r.getMessage()]
    full["on"] = False
    again = {intake.process(gw, m).outcome for m in messages}
    assert again <= {"case", "duplicate"} and "case" in again
    with gw.session() as s:
        assert len(s.scalars(select(Case)).all()) == 20
        assert len(s.scalars(select(InboundMessage)).all()) == 20


def test_a_read_only_database_gives_one_clear_line_not_a_traceback(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from gateway.cli import main

    cfg = factories.write_config(tmp_path / "gw", database=f"sqlite:///{tmp_path / 'gw' / 'russak.db'}")
    runner = CliRunner()
    assert runner.invoke(main, ["--config", str(cfg), "migrate"]).exit_code == 0
    # root ignores file modes, so make the database read-only the way SQLite sees it
    text = cfg.read_text().replace(
        f"sqlite:///{tmp_path / 'gw' / 'russak.db'}",
        f"sqlite:///file:{tmp_path / 'gw' / 'russak.db'}?mode=ro&uri=true",
    )
    cfg.write_text(text)
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml())
    for command in (["ingest", str(order)], ["cases"], ["doctor"]):
        result = runner.invoke(main, ["--config", str(cfg), *command])
        assert result.exit_code in (1, 2), (command, result.output)
        assert "Traceback" not in result.output + result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert result.stderr.startswith("russak: ")
        assert "read-only" in result.stderr or "cannot be written" in result.stderr, result.stderr
