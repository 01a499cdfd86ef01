"""One consistent CLI (#12): --json wherever something is listed or shown, Oslo times with
their offset, no Python reprs, log lines only from --log-level up, and the same exit codes
(0 ok, 1 refused or degraded, 2 configuration or usage) from every command."""

from __future__ import annotations

import functools
import json
import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from gateway.clock import SimulatedClock, local_today
from tests import factories
from tests.test_cli import MISSING, NUMBER, Ran, Russak, invoke

OSLO_TEXT = re.compile(r"\b\d{4}-\d\d-\d\d \d\d:\d\d [+-]\d\d:\d\d\b")
OSLO_ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+01:00$")  # November-March: CET
REPRS = ("datetime.", "{'", "['", "('", "None", "True", "False", "<gateway", "object at 0x")


def no_reprs(text: str) -> None:
    for marker in REPRS:
        assert marker not in text, f"{marker!r} in output:\n{text}"


def instants(data: object) -> list[str]:
    """Every value under a key ``at`` / ``*_at`` in a JSON document."""
    found: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if (key == "at" or key.endswith("_at")) and isinstance(value, str):
                found.append(value)
            else:
                found += instants(value)
    elif isinstance(data, list):
        for value in data:
            found += instants(value)
    return found


def _ingest(russak: Russak, cfg: Path, tmp_path: Path, name: str, data: bytes) -> Ran:
    path = tmp_path / name
    path.write_bytes(data)
    return russak(cfg, "ingest", str(path))


def _settle_at_once(cfg: Path) -> None:
    """Let ``run --once`` take a file at first sight (the default waits for it to settle)."""
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace('path = "spool"', 'path = "spool"\nsettle_seconds = 0'), encoding="utf-8")


def test_a_case_s_life_in_json_and_text(
    cfg: Path, tmp_path: Path, russak: Russak, clock: SimulatedClock
) -> None:
    birth = date(2009, 2, 3)
    order = factories.order_xml(national_id=factories.fnr(birth), birth=birth, guardians=1)
    assert _ingest(russak, cfg, tmp_path, "o.xml", order).returncode == 0
    meeting = local_today(clock.now()) + timedelta(days=3)
    booked = russak(cfg, "record", NUMBER, "summoned", "--date", meeting.isoformat(), "--time", "10:00")
    assert booked.returncode == 0, booked.stderr
    shown = json.loads(russak(cfg, "case", "show", NUMBER, "--json").stdout)
    assert shown["status"] == "summoned" and shown["number"] == NUMBER
    assert [m["outcome"] for m in shown["meetings"]] == ["booked"]  # a code, not "avtalt"
    assert all(OSLO_ISO.match(t) for t in instants(shown)), instants(shown)
    text = russak(cfg, "case", "show", NUMBER)
    assert text.returncode == 0
    no_reprs(text.stdout)
    assert "Status: innkalt" in text.stdout and "summoned" not in text.stdout  # the sheet is Norwegian
    clock.advance(timedelta(days=4))
    assert russak(cfg, "record", NUMBER, "no-show").returncode == 0
    shown = json.loads(russak(cfg, "case", "show", NUMBER, "--json").stdout)
    assert [m["outcome"] for m in shown["meetings"]] == ["no_show"]
    assert shown["status"] == "noncompliant"
    listed = json.loads(russak(cfg, "cases", "--json").stdout)
    assert [c["status"] for c in listed] == ["noncompliant"]
    assert OSLO_ISO.match(listed[0]["created_at"])
    rows = json.loads(russak(cfg, "outbox", "--json").stdout)
    assert rows and all(OSLO_ISO.match(t) for r in rows for t in instants(r))
    outbox = russak(cfg, "outbox")
    no_reprs(outbox.stdout)
    assert all(OSLO_TEXT.search(line) for line in outbox.stdout.splitlines())


def test_quarantine_lists_oslo_time_with_the_zone(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    assert _ingest(russak, cfg, tmp_path, "bad.xml", b"<x/>").returncode == 1
    listed = russak(cfg, "quarantine")
    (line,) = listed.stdout.splitlines()
    # START is 08:00 UTC, so 09:00 in Oslo: never the naive UTC time
    assert "2026-11-23 09:00 +01:00" in line and "08:00" not in line
    (entry,) = json.loads(russak(cfg, "quarantine", "--json").stdout)
    assert entry["received_at"] == "2026-11-23T09:00:00+01:00"


LISTINGS = [
    (("cases", "--json"), 0),
    (("case", "show", NUMBER, "--json"), 0),
    (("outbox", "--json"), 0),
    (("outbox", "--status", "pending", "--json"), 0),
    (("quarantine", "--json"), 0),
    (("status", "--json"), 1),  # no daemon runs in a test
    (("doctor", "--json"), 1),  # init's example values
    (("purge", "--dry-run", "--json"), 0),
    (("purge", "--json"), 0),
    (("migrate", "--json"), 0),
    (("run", "--once", "--json"), 0),
]


@pytest.mark.parametrize(
    ("args", "code"), LISTINGS, ids=lambda v: " ".join(v) if isinstance(v, tuple) else ""
)
def test_every_listing_speaks_json_and_only_json(
    cfg: Path, tmp_path: Path, russak: Russak, args: tuple[str, ...], code: int
) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0
    result = russak(cfg, *args)
    assert result.returncode == code, result.stdout + result.stderr
    data = json.loads(result.stdout)  # the whole of stdout
    assert all(OSLO_ISO.match(t) for t in instants(data)), instants(data)
    no_reprs(json.dumps(data))


def test_run_once_exits_1_when_the_cycle_quarantined_something_new(cfg: Path, russak: Russak) -> None:
    _settle_at_once(cfg)
    (cfg.parent / "spool" / "inbox" / "hostile.xml").write_bytes(b"<?xml version='1.0'?><x>")
    first = russak(cfg, "run", "--once", "--json")
    assert first.returncode == 1, first.stderr
    assert json.loads(first.stdout)["outcomes"] == {"quarantined": 1}
    again = russak(cfg, "run", "--once")
    assert again.returncode == 0  # the quarantine is still there, but nothing new went in


def test_run_once_exits_1_when_the_cycle_made_a_dead_letter(
    cfg: Path, tmp_path: Path, russak: Russak, monkeypatch: pytest.MonkeyPatch
) -> None:
    from connectors.spool import SpoolChannel
    from gateway.ports import OutboundMessage, PermanentError, Receipt

    def refuse(self: SpoolChannel, message: OutboundMessage) -> Receipt:
        raise PermanentError("spool: the mail folder refuses writes (test)")

    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0  # alerts pending
    monkeypatch.setattr(SpoolChannel, "send", refuse)
    result = russak(cfg, "run", "--once", "--json")
    assert result.returncode == 1
    assert json.loads(result.stdout)["dead"] >= 1


def test_quarantine_retry_exits_0_once_it_goes_through(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml(kommunenummer="4602")).returncode == 1
    assert russak(cfg, "quarantine", "retry", "1").returncode == 1  # quarantined again, as ingest says
    cfg.write_text(cfg.read_text().replace('kommunenummer = ["4601"]', 'kommunenummer = ["4601", "4602"]'))
    assert russak(cfg, "quarantine", "retry", "2").returncode == 0
    assert russak(cfg, "quarantine", "retry", "2").returncode == 1  # released: no open entry


def test_exit_codes_of_every_command(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml())
    expected: list[tuple[tuple[str, ...], int]] = [
        (("ingest", str(order)), 0),
        (("ingest", str(order)), 0),  # a duplicate is a recorded no-op
        (("cases",), 0),
        (("cases", "--status", "bogus"), 2),
        (("case", "show", NUMBER), 0),
        (("case", "show", MISSING), 1),
        (("record", NUMBER, "summoned"), 2),  # needs --date
        (("record", NUMBER, "summoned", "--date", "not a date"), 2),
        (("record", NUMBER, "send-notice"), 1),  # no notice to confirm
        (("record", MISSING, "attended"), 1),
        (("record", NUMBER, "frobnicate"), 2),
        (("outbox",), 0),
        (("outbox", "retry", "1"), 1),  # not a dead letter
        (("outbox", "dismiss", "1"), 1),
        (("quarantine",), 0),
        (("quarantine", "export", "7", str(tmp_path / "q.xml")), 1),
        (("quarantine", "retry", "7"), 1),
        (("purge", "--dry-run"), 0),
        (("migrate",), 0),
        (("run", "--json"), 2),  # --json needs --once
        (("run", "--once"), 0),
        (("status",), 1),
        (("doctor",), 1),
        (("key", "rotate"), 0),
        (("key", "reencrypt"), 0),
        (("no-such-command",), 2),
    ]
    for args, code in expected:
        result = russak(cfg, *args)
        assert result.returncode == code, f"russak {' '.join(args)}: {result.returncode}\n{result.stderr}"
        if code:
            assert result.stderr.strip(), f"russak {' '.join(args)} exited {code} without saying why"
            assert "Traceback" not in result.stderr


REGISTER = ("--first-name", "Kari", "--last-name", "Testesen", "--case-reference", "24817395")
REGISTER += ("--condition-end", "1.12.2028")


TYPO_COMMANDS = [
    ("doctor",),
    ("doctor", "--json"),
    ("status",),
    ("migrate",),
    ("run", "--once"),
    ("cases",),
    ("case", "show", "1"),
    ("record", "1", "attended"),
    ("register", "1", "--national-id", "x", *REGISTER),
    ("outbox",),
    ("outbox", "retry", "1"),
    ("quarantine",),
    ("quarantine", "retry", "1"),
    ("purge", "--dry-run"),
    ("key", "rotate"),
    ("key", "reencrypt"),
]


@pytest.mark.parametrize("args", TYPO_COMMANDS, ids=" ".join)
@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("retention_days = 90", "retention_dayz = 90", "gateway.retention_dayz"),
        ('type = "spool"', 'type = "spoool"', "unknown type 'spoool'"),
    ],
    ids=["misspelt key", "unknown channel type"],
)
def test_a_config_typo_exits_2_from_every_command(
    cfg: Path, russak: Russak, args: tuple[str, ...], old: str, new: str, named: str
) -> None:
    text = cfg.read_text(encoding="utf-8")
    assert old in text
    cfg.write_text(text.replace(old, new), encoding="utf-8")
    result = russak(cfg, *args)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.startswith("russak: ") and named in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_one_shot_commands_log_warnings_only_unless_asked(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    quiet = _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml())
    assert quiet.returncode == 0 and quiet.stderr == ""
    loud = russak(cfg, "--log-level", "debug", "cases")  # any case
    assert loud.returncode == 0
    assert '"level": "DEBUG"' in loud.stderr or "DEBUG" in loud.stderr
    info = russak(cfg, "--log-level", "Info", "outbox")
    assert info.returncode == 0 and "DEBUG" not in info.stderr
    assert russak(cfg, "--log-level", "loud", "cases").returncode == 2


def test_the_daemon_logs_at_the_configured_level(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0
    once = russak(cfg, "run", "--once")  # gateway.log_level defaults to INFO
    assert once.returncode == 0 and "delivered via spool" in once.stderr
    assert "delivered via spool" not in once.stdout
    quiet = russak(cfg, "--log-level", "error", "run", "--once")
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_record_confirms_in_norwegian_with_the_status_word(
    cfg: Path, tmp_path: Path, russak: Russak, clock: SimulatedClock
) -> None:
    assert _ingest(russak, cfg, tmp_path, "o.xml", factories.order_xml()).returncode == 0
    done = russak(cfg, "record", NUMBER, "attended", "--date", local_today(clock.now()).isoformat())
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"{NUMBER}: Oppmøtet ")
    assert done.stdout.rstrip().endswith("Status: oppfylt.")
    assert "fulfilled" not in done.stdout
    assert json.loads(russak(cfg, "cases", "--json").stdout)[0]["status"] == "fulfilled"


def _letter_case(russak: Russak, cfg: Path, tmp_path: Path, nid: str) -> None:
    letter = factories.mail(
        sender=factories.POLICE_SENDER,
        subject="Pålegg om oppmøte",
        body=f"Gjelder {nid[:6]} {nid[6:]}, sak 24817395, prøvetid til 1.12.2028.",
    )
    result = _ingest(russak, cfg, tmp_path, "brev.eml", letter)
    assert result.returncode == 0 and "letter" in result.stdout, result.stdout


def test_register_without_a_terminal_needs_the_option(cfg: Path, tmp_path: Path, russak: Russak) -> None:
    nid = factories.fnr(date(2001, 2, 3))
    _letter_case(russak, cfg, tmp_path, nid)
    result = russak(cfg, "register", NUMBER, *REGISTER)
    assert result.returncode == 2
    assert "--national-id" in result.stderr and "terminal" in result.stderr
    wrong = russak(
        cfg, "register", NUMBER, "--national-id", nid[:-1] + str((int(nid[-1]) + 1) % 10), *REGISTER
    )
    assert wrong.returncode == 1 and not re.search(r"\d{11}", wrong.stdout + wrong.stderr)
    done = russak(cfg, "register", NUMBER, "--national-id", nid, *REGISTER)
    assert done.returncode == 0 and done.stdout.strip() == f"{NUMBER}: registered; status awaiting_summons"
    assert nid not in done.stdout + done.stderr


def test_register_asks_on_a_terminal_without_echoing(
    cfg: Path, tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gateway.cli.cases

    nid = factories.fnr(date(2001, 2, 3))
    _letter_case(functools.partial(invoke, clock), cfg, tmp_path, nid)
    monkeypatch.setattr(gateway.cli.cases, "stdin_is_terminal", lambda: True)
    result = invoke(clock, cfg, "register", NUMBER, *REGISTER, stdin=nid + "\n")
    assert result.returncode == 0, result.stderr
    assert "Identity number" in result.stdout and nid not in result.stdout + result.stderr
    revealed = json.loads(invoke(clock, cfg, "case", "show", NUMBER, "--json", "--reveal").stdout)
    assert revealed["national_id"] == nid


def test_case_show_reveals_a_letter_s_numbers_only_when_asked(
    cfg: Path, tmp_path: Path, russak: Russak
) -> None:
    nid = factories.fnr(date(2001, 2, 3))
    _letter_case(russak, cfg, tmp_path, nid)
    hidden = russak(cfg, "case", "show", NUMBER)
    hidden_json = russak(cfg, "case", "show", NUMBER, "--json")
    assert not re.search(r"\d{6}", hidden.stdout.replace("24817395", "")) or nid[:6] not in hidden.stdout
    assert nid not in hidden.stdout + hidden_json.stdout and nid[6:] not in hidden_json.stdout
    shown = russak(cfg, "case", "show", NUMBER, "--reveal")
    assert nid in shown.stdout
    assert json.loads(russak(cfg, "case", "show", NUMBER, "--json", "--reveal").stdout)[
        "suggested_national_ids"
    ] == [nid]


def _database_at(cfg: Path, revision: str) -> None:
    from importlib import resources

    from alembic import command
    from alembic.config import Config

    from gateway import db

    (cfg.parent / "russak.db").unlink()
    engine = db.make_engine(f"sqlite:///{cfg.parent / 'russak.db'}")
    alembic = Config()
    alembic.set_main_option("script_location", str(resources.files("gateway") / "migrations"))
    alembic.attributes["engine"] = engine
    try:
        command.upgrade(alembic, revision)
    finally:
        engine.dispose()


def test_migrate_says_what_it_did(cfg: Path, russak: Russak) -> None:
    _database_at(cfg, "0002")
    old = russak(cfg, "cases")
    assert old.returncode == 2 and "russak migrate" in old.stderr
    assert russak(cfg, "migrate").stdout.strip() == "database schema migrated from 0002 to 0003"
    assert russak(cfg, "migrate").stdout.strip() == "database schema already current (0003)"
    (cfg.parent / "russak.db").unlink()
    fresh = json.loads(russak(cfg, "migrate", "--json").stdout)
    assert fresh == {
        "migrated": True,
        "from": None,
        "to": "0003",
        "head": "0003",
        "direction": "upgrade",
        "undone": [],
    }


def test_the_daemon_ends_with_the_codes_systemd_is_told_about(cfg: Path, russak: Russak) -> None:
    from gateway.ops import exitcodes

    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace("retention_days = 90", "retention_dayz = 90"), encoding="utf-8")
    typo = russak(cfg, "run")
    assert typo.returncode == exitcodes.EXIT_CONFIG
    assert typo.stderr.startswith("russak: ") and "gateway.retention_dayz" in typo.stderr
    assert len(typo.stderr.strip().splitlines()) == 1
    cfg.write_text(text, encoding="utf-8")
    key = cfg.parent / "russak.key"
    key.chmod(0o644)
    open_key = russak(cfg, "run")
    assert open_key.returncode == exitcodes.EXIT_KEY and "gateway.key_file" in open_key.stderr
    assert russak(cfg, "run", "--once").returncode == 2  # a one-shot keeps 0/1/2
    assert russak(cfg, "run", "--json").returncode == 2
