"""The ``russak`` command as an operator uses it: real subprocesses where it matters."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time as wallclock
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main
from gateway.clock import SimulatedClock, local_today
from tests import factories
from tests.conftest import START

RUSSAK = [sys.executable, "-m", "gateway"]
# Every command runs in-process on the test's simulated clock (``main(obj=clock)``), so
# no result depends on the day, hour or time zone the suite runs in.
NUMBER = f"RUS-{local_today(START).year}-0001"
MISSING = f"RUS-{local_today(START).year}-9999"


@dataclass(frozen=True)
class Ran:
    returncode: int
    stdout: str
    stderr: str


Russak = Callable[..., Ran]


def invoke(clock: SimulatedClock, cfg: Path, *args: str, stdin: str | None = None) -> Ran:
    """``russak --config CFG ARGS`` in-process on ``clock``; an unexpected exception is raised."""
    result = CliRunner().invoke(main, ["--config", str(cfg), *args], obj=clock, input=stdin)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


# What `russak init` writes, with every example value replaced: what doctor accepts.
# Synthetic too: mod-11 valid org numbers of no unit, and the reserved .test domain.
FIT = {
    'org_number = "937000006"': 'org_number = "910000004"',
    'staff = ["saksbehandler@kommune.example"]': 'staff = ["kari.nordmann@testdal.kommune.test"]',
    'contact_name = ""': 'contact_name = "Rådgivende enhet for russaker, Testdal"',
    'contact_phone = ""': 'contact_phone = "+47 400 00 000"',
    'name = "Testdal politidistrikt (eksempel)"': 'name = "Testdal politidistrikt"',
    'org_number = "921000006"': 'org_number = "920000002"',
    'sender_addresses = ["@politiet.no"]': 'sender_addresses = ["patale.testdal@politiet.no"]',
    'sender_address = "russak-gateway@kommune.example"': 'sender_address = "russak@testdal.kommune.test"',
}


def make_fit(cfg: Path) -> Path:
    """Edit an init-written russak.toml as an operator would before production."""
    text = cfg.read_text(encoding="utf-8")
    for old, new in FIT.items():
        assert old in text, f"russak init no longer writes {old}"
        text = text.replace(old, new)
    cfg.write_text(text, encoding="utf-8")
    return cfg


def russak_process(cfg: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real command in its own process (signals, ``python -m gateway``)."""
    return subprocess.run([*RUSSAK, "--config", str(cfg), *args], capture_output=True, text=True, timeout=60)


def init_site(tmp_path: Path) -> Path:
    """``russak init --dir TMP/site``; its russak.toml."""
    result = CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "site")])
    assert result.exit_code == 0, result.output
    return tmp_path / "site" / "russak.toml"


def test_init_writes_a_working_setup_and_never_overwrites(tmp_path: Path) -> None:
    runner = CliRunner()
    site = tmp_path / "site"
    first = runner.invoke(
        main,
        [
            "init",
            "--dir",
            str(site),
            "--org-number",
            "937000006",
            "--kommunenummer",
            "4601",
            "--kommunenummer",
            "4602",
        ],
    )
    assert first.exit_code == 0, first.output
    assert (site / "russak.key").stat().st_mode & 0o777 == 0o600
    key = (site / "russak.key").read_bytes()
    assert {"inbox", "outbox", "mail"} <= {p.name for p in (site / "spool").iterdir()}
    assert '"4601", "4602"' in (site / "russak.toml").read_text()
    second = runner.invoke(main, ["init", "--dir", str(site)])
    assert second.exit_code == 0 and "kept" in second.output
    assert (site / "russak.key").read_bytes() == key


def test_bad_org_number_in_init_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "x"), "--org-number", "123456789"])
    assert result.exit_code == 2


def test_configuration_errors_exit_2_naming_file_and_key(tmp_path: Path, cfg: Path, russak: Russak) -> None:
    text = cfg.read_text().replace('org_number = "937000006"', 'org_number = "937000007"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text)
    (tmp_path / "russak.key").write_bytes((cfg.parent / "russak.key").read_bytes())
    result = russak(bad, "cases")
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "units.0.org_number" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    missing = russak(tmp_path / "nope.toml", "cases")
    assert missing.returncode == 2 and "not found" in missing.stderr


def test_ingest_cases_case_show_and_reveal(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    nid = factories.fnr(date(2009, 2, 3))
    order = tmp_path / "ordre.xml"
    order.write_bytes(factories.order_xml(national_id=nid, birth=date(2009, 2, 3), guardians=1))
    hostile = tmp_path / "hostile.xml"
    hostile.write_bytes(
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>"
    )
    result = russak(cfg, "ingest", str(order), str(order), str(hostile))
    lines = result.stdout.strip().splitlines()
    assert lines[0] == f"ordre.xml: case {NUMBER}"
    assert lines[1].startswith("ordre.xml: duplicate")
    assert lines[2].startswith("hostile.xml: quarantined") and "DTD" in lines[2]
    assert result.returncode == 1  # something was quarantined
    cases = json.loads(russak(cfg, "cases", "--json").stdout)
    assert len(cases) == 1
    assert {"id", "unit", "status", "order_id", "case_reference", "minor", "deadline"} <= set(cases[0])
    assert cases[0]["minor"] is True and cases[0]["status"] == "awaiting_summons"
    number = cases[0]["number"]
    shown = russak(cfg, "case", "show", number, "--json")
    assert nid not in shown.stdout and "national_id" not in json.loads(shown.stdout)
    revealed = russak(cfg, "case", "show", number, "--json", "--reveal")
    assert json.loads(revealed.stdout)["national_id"] == nid
    quarantine = json.loads(russak(cfg, "quarantine", "--json").stdout)
    assert [set(q) for q in quarantine] == [{"id", "channel", "reason", "received_at"}]
    exported = tmp_path / "q1.xml"
    assert russak(cfg, "quarantine", "export", "1", str(exported)).returncode == 0
    assert exported.read_bytes() == hostile.read_bytes()
    assert exported.stat().st_mode & 0o777 == 0o600
    # the reveal and the export are audited
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{cfg.parent / 'russak.db'}")
    with engine.connect() as conn:
        actions = [r[0] for r in conn.execute(text("select action from audit"))]
    engine.dispose()
    assert "revealed_identity" in actions and "quarantine_exported" in actions


def test_record_events_and_outbox_json(
    cfg: Path, tmp_path: Path, russak: Russak, clock: SimulatedClock
) -> None:
    meeting = local_today(clock.now()) + timedelta(days=10)
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml())
    russak(cfg, "ingest", str(order))
    ok = russak(
        cfg,
        "record",
        NUMBER,
        "summoned",
        "--date",
        meeting.isoformat(),
        "--time",
        "10:00",
        "--place",
        "Kontoret",
    )
    assert ok.returncode == 0, ok.stderr
    # the staff's Norwegian confirmation, and the status as its Norwegian word (#12)
    assert ok.stdout.startswith(f"{NUMBER}: Innkallingen er registrert.")
    assert ok.stdout.rstrip().endswith("Status: innkalt.")
    clock.advance(timedelta(days=11))  # the meeting has passed
    no_show_date = f"{meeting.day}.{meeting.month}.{meeting.year}"
    assert russak(cfg, "record", NUMBER, "no-show", "--date", no_show_date).returncode == 0
    assert russak(cfg, "record", NUMBER, "send-notice").returncode == 0
    refused = russak(cfg, "record", NUMBER, "send-notice")
    assert refused.returncode == 1 and refused.stderr.startswith("russak: ")
    assert russak(cfg, "record", MISSING, "attended").returncode == 1
    assert russak(cfg, "record", NUMBER, "summoned").returncode == 2  # needs --date
    rows = json.loads(russak(cfg, "outbox", "--json").stdout)
    assert {"id", "kind", "status", "case", "attempts"} <= set(rows[0])
    assert any(r["kind"] == "notice" and r["status"] == "pending" for r in rows)
    once = russak(cfg, "run", "--once")
    assert once.returncode == 0, once.stderr
    rows = json.loads(russak(cfg, "outbox", "--json").stdout)
    assert all(r["status"] == "sent" for r in rows)
    assert len(list((cfg.parent / "spool" / "outbox").glob("*.xml"))) == 1


def test_daemon_runs_idles_and_stops_cleanly_on_sigterm(cfg: Path, russak: Russak) -> None:
    inbox = cfg.parent / "spool" / "inbox"
    text = cfg.read_text().replace("poll_interval_seconds = 60", "poll_interval_seconds = 0.5")
    cfg.write_text(text)
    proc = subprocess.Popen([*RUSSAK, "--config", str(cfg), "run"], stderr=subprocess.PIPE, text=True)
    try:
        from connectors.spool import drop_file

        drop_file(inbox, "o.xml", factories.order_xml())
        deadline = wallclock.monotonic() + 30
        while any(inbox.iterdir()) and wallclock.monotonic() < deadline:
            wallclock.sleep(0.2)
        assert not any(inbox.iterdir()), "the daemon did not take the order"
        second = russak_process(cfg, "run", "--once")
        assert second.returncode == 1 and "single-instance" in second.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert "russak-gateway running" in err and "russak-gateway stopped" in err
    assert "Traceback" not in err


def test_purge_removes_personal_data_after_retention(
    cfg: Path, tmp_path: Path, russak: Russak, clock: SimulatedClock
) -> None:
    nid = factories.fnr()
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml(national_id=nid))
    russak(cfg, "ingest", str(order))
    russak(cfg, "record", NUMBER, "close", "--reason", "flyttet")
    assert "would purge 0 case(s)" in russak(cfg, "purge", "--dry-run").stdout
    from gateway.app import open_gateway
    from gateway.cases import retention
    from gateway.config import load_settings

    later = SimulatedClock(clock.now() + timedelta(days=91))
    gw = open_gateway(load_settings(cfg), clock=later)
    try:
        report = retention.purge(gw)
        assert report.cases == [NUMBER]
        from sqlalchemy import func, select

        from gateway.models import Case, CaseStatistic, InboundMessage, Person

        with gw.session() as s:
            assert s.scalar(select(func.count()).select_from(Case)) == 0
            assert s.scalar(select(func.count()).select_from(Person)) == 0
            assert s.scalars(select(InboundMessage.content)).all() == [None]
            stat = s.scalars(select(CaseStatistic)).one()
            assert stat.final_status == "closed" and stat.unit_code == "enhet"
    finally:
        gw.close()
    assert json.loads(russak(cfg, "cases", "--json").stdout) == []


def test_python_dash_m_gateway_is_the_cli() -> None:
    result = subprocess.run([*RUSSAK, "--help"], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "russak-gateway" in result.stdout


def test_quarantined_order_can_be_retried_after_the_config_is_fixed(
    cfg: Path, tmp_path: Path, russak: Russak
) -> None:
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml(kommunenummer="4602"))  # not served yet
    first = russak(cfg, "ingest", str(order))
    assert "quarantined" in first.stdout and "no configured unit" in first.stdout
    assert russak(cfg, "quarantine", "retry", "1").returncode == 1  # still not served
    cfg.write_text(cfg.read_text().replace('kommunenummer = ["4601"]', 'kommunenummer = ["4601", "4602"]'))
    retried = russak(cfg, "quarantine", "retry", "1")
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert f"case {NUMBER}" in retried.stdout
    assert 1 not in [q["id"] for q in json.loads(russak(cfg, "quarantine", "--json").stdout)]


def test_dead_letters_can_be_retried_or_dismissed(cfg: Path, russak: Russak, clock: SimulatedClock) -> None:
    make_fit(cfg)  # so that only the dead letters can make doctor fail
    from gateway.app import open_gateway
    from gateway.clock import OSLO
    from gateway.config import load_settings
    from gateway.models import OutboxItem
    from gateway.staff import mailer as staff

    # Before the day's digest time, so the cycle below sends only the two revived rows.
    clock.set(datetime.combine(local_today(clock.now()), time(6, 0), tzinfo=OSLO))
    gw = open_gateway(load_settings(cfg), clock=clock)
    try:
        with gw.session() as s:
            staff.send(gw, s, key="t:1", subject="x", body="y", unit_code="enhet")
            staff.send(gw, s, key="t:2", subject="x", body="y", unit_code="enhet")
            for row in s.query(OutboxItem):
                row.status = "dead"
    finally:
        gw.close()
    assert russak(cfg, "doctor").returncode == 1
    assert russak(cfg, "outbox", "retry", "1").returncode == 0
    assert russak(cfg, "outbox", "dismiss", "2").returncode == 0
    assert russak(cfg, "outbox", "retry", "2").returncode == 1
    russak(cfg, "run", "--once")
    rows = {r["id"]: r["status"] for r in json.loads(russak(cfg, "outbox", "--json").stdout)}
    assert rows == {1: "sent", 2: "cancelled"}
    assert russak(cfg, "doctor").returncode == 0


def test_key_rotation_and_reencryption_keep_data_readable(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    nid = factories.fnr()
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml(national_id=nid))
    russak(cfg, "ingest", str(order))
    key_file = cfg.parent / "russak.key"
    before = [line for line in key_file.read_text().splitlines() if line.startswith("russak-key")]
    assert russak(cfg, "key", "rotate").returncode == 0
    after = [line for line in key_file.read_text().splitlines() if line.startswith("russak-key")]
    assert len(after) == 2 and after[1:] == before
    result = russak(cfg, "key", "reencrypt")
    assert result.returncode == 0 and "re-encrypted" in result.stdout
    # after re-encryption the newest key alone reads everything, hashes included
    shown = russak(cfg, "case", "show", NUMBER, "--json", "--reveal")
    assert json.loads(shown.stdout)["national_id"] == nid
    from gateway.privacy import Cipher, load_key_file

    newest_only = tmp_path / "newest.key"
    newest_only.write_text(after[0] + "\n")
    newest_only.chmod(0o600)
    cipher: Cipher = load_key_file(newest_only)
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{cfg.parent / 'russak.db'}")
    with engine.connect() as conn:
        token, stored_hash = conn.execute(text("select national_id, national_id_hash from persons")).one()
    engine.dispose()
    assert cipher.decrypt_text(bytes(token)) == nid  # written under the newest key
    old_only = tmp_path / "old.key"
    old_only.write_text("\n".join(before) + "\n")
    old_only.chmod(0o600)
    assert stored_hash == cipher.keyed_hash(nid)  # re-keyed: the old key no longer matches it
    assert stored_hash != load_key_file(old_only).keyed_hash(nid)


def test_a_foreign_key_file_is_refused_at_start(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    from gateway.privacy import generate_key_file

    assert russak(cfg, "cases").returncode == 0  # the first start stored the key check
    key = cfg.parent / "russak.key"
    key.rename(tmp_path / "right.key")
    generate_key_file(key)
    result = russak(cfg, "run", "--once")
    assert result.returncode == 2
    assert "does not belong to this database" in result.stderr
    key.unlink()
    (tmp_path / "right.key").rename(key)
    assert russak(cfg, "run", "--once").returncode == 0
