"""Set-up refuses what would fail in production (#12): ``init`` says what it kept and
what it did not apply, ``doctor`` refuses example values, a unit nobody can be reached
at and folders it cannot write, and says whether a daemon runs."""

from __future__ import annotations

import json
import os
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.clock import SimulatedClock
from tests.test_cli import Russak, make_fit


def _init(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, ["init", *args])
    return result.exit_code, result.stdout, result.stderr


# init ---------------------------------------------------------------------------------------


def test_init_on_an_existing_folder_says_what_it_kept_and_ignored(tmp_path: Path) -> None:
    site = tmp_path / "site"
    assert _init("--dir", str(site))[0] == 0
    before = (site / "russak.toml").read_text()
    code, out, _ = _init("--dir", str(site), "--org-number", "910000004")
    assert code == 0
    assert f"kept   existing {site / 'russak.toml'}; --org-number was not applied: edit the file" in out
    assert f"kept   existing {site / 'russak.key'} (never overwritten)" in out
    code, out, _ = _init("--dir", str(site), "--staff", "kari@testdal.kommune.test", "--name", "Enheten")
    assert "--name, --staff were not applied: edit the file" in out
    assert (site / "russak.toml").read_text() == before
    code, out, _ = _init("--dir", str(site))
    assert code == 0 and f"kept   existing {site / 'russak.toml'}\n" in out and "not applied" not in out


@pytest.mark.parametrize(
    "address",
    [
        "kari.nordmann@sor-aurdal,kommune.no",
        "kari.nordmann",
        "Kari Nordmann <kari@kommune.no>",
        "kari@kommune",
        "kari@@kommune.no",
        "kari nordmann@kommune.no",
    ],
)
def test_init_refuses_a_staff_address_that_is_not_one(tmp_path: Path, address: str) -> None:
    code, _, err = _init("--dir", str(tmp_path / "site"), "--staff", address)
    assert code == 2
    assert err.startswith(f"russak: --staff {address}: not an e-mail address")
    assert not (tmp_path / "site").exists()  # refused before anything was written


def test_init_writes_the_modes_the_ops_guide_promises_whatever_the_umask(tmp_path: Path) -> None:
    site = tmp_path / "site"
    old = os.umask(0o077)  # what the CLI sets for itself anyway
    try:
        assert _init("--dir", str(site))[0] == 0
    finally:
        os.umask(old)
    assert (site / "russak.toml").stat().st_mode & 0o777 == 0o640
    assert (site / "russak.key").stat().st_mode & 0o777 == 0o600
    guide = (Path(__file__).resolve().parent.parent / "docs" / "ops-guide.md").read_text(encoding="utf-8")
    assert "`russak.toml` | the embedded default (SQLite + spool folder), same shape as" in guide
    assert "mode 0640" in guide.split("`russak.toml` |", 1)[1].splitlines()[0]


def test_init_writes_names_and_addresses_as_valid_toml(tmp_path: Path) -> None:
    name = 'Rådgivende enhet "Øst", Testdal'
    code, _, err = _init(
        "--dir", str(tmp_path / "site"), "--name", name, "--staff", "Kari.Nordmann@Testdal.Kommune.test"
    )
    assert code == 0, err
    import tomllib

    written = tomllib.loads((tmp_path / "site" / "russak.toml").read_text(encoding="utf-8"))
    assert written["units"][0]["name"] == name
    assert written["units"][0]["staff"] == ["kari.nordmann@testdal.kommune.test"]


# doctor ----------------------------------------------------------------------------------------

EXAMPLE_FINDINGS = [
    "FAILED units.0.org_number: 937000006 is a test value",
    "FAILED units.0.staff: saksbehandler@kommune.example is an example address",
    "FAILED units.0: no contact line",
    'FAILED units.0.police.0.name: "Testdal politidistrikt (eksempel)" is an example name',
    "FAILED units.0.police.0.org_number: 921000006 is a test value",
    "FAILED units.0.police.0.sender_addresses: @politiet.no is the example from russak init",
    "FAILED channels.0.sender_address: russak-gateway@kommune.example is an example address",
]


def test_doctor_refuses_every_example_value_init_wrote(cfg: Path, russak: Russak) -> None:
    result = russak(cfg, "doctor")
    assert result.returncode == 1
    for finding in EXAMPLE_FINDINGS:
        assert finding in result.stdout, finding
    assert result.stderr == f"russak: {len(EXAMPLE_FINDINGS)} problem(s) found\n"
    report = json.loads(russak(cfg, "doctor", "--json").stdout)
    assert report["ok"] is False
    assert len([f for f in report["findings"] if f["level"] == "fail"]) == len(EXAMPLE_FINDINGS)


def test_doctor_accepts_an_edited_setup(cfg: Path, russak: Russak) -> None:
    make_fit(cfg)
    result = russak(cfg, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "FAILED" not in result.stdout and "WARNING" not in result.stdout and result.stderr == ""
    assert json.loads(russak(cfg, "doctor", "--json").stdout)["ok"] is True


def test_doctor_refuses_a_unit_nobody_can_be_reached_at(cfg: Path, russak: Russak) -> None:
    make_fit(cfg)
    text = cfg.read_text(encoding="utf-8")
    text = text.replace('contact_name = "Rådgivende enhet for russaker, Testdal"', 'contact_name = ""')
    cfg.write_text(text.replace('contact_phone = "+47 400 00 000"', 'contact_phone = " "'), encoding="utf-8")
    result = russak(cfg, "doctor")
    assert result.returncode == 1
    assert "FAILED units.0: no contact line" in result.stdout


def test_doctor_warns_about_a_whole_domain_of_police_senders(cfg: Path, russak: Russak) -> None:
    make_fit(cfg)
    text = cfg.read_text(encoding="utf-8")
    old = 'sender_addresses = ["patale.testdal@politiet.no"]'
    cfg.write_text(text.replace(old, 'sender_addresses = ["@testdal.politi.test"]'), encoding="utf-8")
    result = russak(cfg, "doctor")
    assert result.returncode == 0, result.stdout
    assert (
        "WARNING units.0.police.0.sender_addresses: @testdal.politi.test accepts letters from anyone at "
        "testdal.politi.test" in result.stdout
    )
    (warning,) = json.loads(russak(cfg, "doctor", "--json").stdout)["findings"]
    assert warning["level"] == "warning"


def _unwritable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``os.access`` says ``folder`` cannot be written (root could write it whatever its mode)."""
    real = os.access

    def access(path: object, mode: int, *args: object, **kwargs: object) -> bool:
        if Path(str(path)) == folder and mode & os.W_OK:
            return False
        return real(path, mode, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "access", access)


def test_doctor_refuses_a_channel_folder_it_cannot_write(
    cfg: Path, russak: Russak, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_fit(cfg)
    outbox = cfg.parent / "spool" / "outbox"
    _unwritable(monkeypatch, outbox)
    result = russak(cfg, "doctor")
    assert result.returncode == 1
    assert "channel spool (spool): FAILED" in result.stdout and "outbox/ is not writable" in result.stdout


def test_doctor_checks_spool_folders_itself_when_the_channel_has_no_check(
    cfg: Path, russak: Russak, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.spool import SpoolChannel

    make_fit(cfg)
    monkeypatch.delattr(SpoolChannel, "check")
    mail = cfg.parent / "spool" / "mail"
    _unwritable(monkeypatch, mail)
    result = russak(cfg, "doctor")
    assert result.returncode == 1
    assert f"spool: {mail} is not writable" in result.stdout


def test_doctor_reports_a_missing_spool_root(cfg: Path, russak: Russak) -> None:
    import shutil

    make_fit(cfg)
    shutil.rmtree(cfg.parent / "spool")
    result = russak(cfg, "doctor")
    assert result.returncode == 1 and "channel spool (spool): FAILED" in result.stdout


def test_doctor_says_whether_a_daemon_runs_and_when_channels_were_polled(
    cfg: Path, russak: Russak, clock: SimulatedClock
) -> None:
    make_fit(cfg)
    quiet = russak(cfg, "doctor")
    assert "daemon: not running" in quiet.stdout and "channel spool (spool): ok; never polled" in quiet.stdout
    assert russak(cfg, "run", "--once").returncode == 0
    clock.advance(timedelta(minutes=1))
    polled = russak(cfg, "doctor")
    assert (
        "channel spool (spool): ok; last poll started 2026-11-23 09:00 +01:00 "
        "(from the poll lease; no poll record yet)" in polled.stdout
    )
    _hold_instance_lease(cfg, clock)
    running = russak(cfg, "doctor", "--json")
    daemon = json.loads(running.stdout)["daemon"]
    assert daemon["running"] is True and daemon["owner"].endswith(":test")
    assert "daemon: running (" in russak(cfg, "doctor").stdout


def _hold_instance_lease(cfg: Path, clock: SimulatedClock, *, pid: int | None = None) -> None:
    """What a running daemon leaves in the ``leases`` table (this process stands in for it)."""
    from gateway.app import open_gateway
    from gateway.config import load_settings
    from gateway.context import host_name
    from gateway.models import Lease

    gw = open_gateway(load_settings(cfg), clock=clock)
    try:
        with gw.session() as session:
            owner = f"{host_name()}:{pid or os.getpid()}:test"
            session.merge(Lease(name="instance", owner=owner, until=clock.now() + timedelta(minutes=5)))
    finally:
        gw.close()


def test_doctor_sees_through_a_lease_whose_process_is_gone(
    cfg: Path, russak: Russak, clock: SimulatedClock
) -> None:
    _hold_instance_lease(cfg, clock, pid=2**22 + 12345)  # beyond pid_max: no such process
    result = russak(cfg, "doctor")
    assert "daemon: not running (lease held by" in result.stdout and "whose process is gone" in result.stdout
