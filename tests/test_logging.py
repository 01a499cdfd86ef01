"""Logs for operators: JSON lines off a terminal, journald priorities under systemd,
readable text with the zone on a terminal, and never an identity number, through the
real handler ``configure_logging`` installs on a real stream, file or pseudo-terminal."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from gateway.clock import SimulatedClock, local_today
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.intake import pipeline as intake
from gateway.models import OutboxItem
from gateway.ports import PermanentError, RawMessage, TransientError
from gateway.privacy import MASK, JournalFormatter, JsonFormatter, TextFormatter, configure_logging
from gateway.privacy import logs as privacy_logs
from gateway.staff import reminders
from tests import factories

FNR = factories.fnr()
SPACED = f"{FNR[:6]} {FNR[6:]}"
NBSP = f"{FNR[:6]}\u00a0{FNR[6:]}"
ZONED = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d[+-]\d\d:\d\d")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv("JOURNAL_STREAM", raising=False)
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    noisy = {
        name: logging.getLogger(name).level for name in ("apscheduler.executors", "apscheduler.scheduler")
    }
    yield
    for handler in list(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)
    for name, value in noisy.items():
        logging.getLogger(name).setLevel(value)
    logging.captureWarnings(False)
    privacy_logs._handler = None


def ours(before: list[logging.Handler]) -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers if h not in before]


def fail_with_number() -> None:
    raise ValueError(f"bad person {FNR}")


def log_everything(log: logging.Logger) -> None:
    """An identity number in each place one can hide: message, argument, exception, extra."""
    log.info(f"in the message {FNR}")  # noqa: G004  (the point: the number in the message itself)
    log.info("as an argument %s", SPACED)
    try:
        fail_with_number()
    except ValueError:
        log.exception("failed for %s", NBSP)
    log.warning(
        "in extra fields",
        extra={"case": FNR, "channel": f"spool {SPACED}", "outbox_id": int(FNR), "outcome": NBSP},
    )


def assert_no_number(out: str) -> None:
    for written in (FNR, SPACED, NBSP, FNR[6:], "\\u00a0"):
        assert written not in out


def json_stderr(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    stream = io.StringIO()  # not a terminal, not the journal: JSON
    monkeypatch.setattr(sys, "stderr", stream)
    return stream


# --- JSON lines ----------------------------------------------------------------------


def test_json_lines_parse_with_time_level_logger_message(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = json_stderr(monkeypatch)
    before = list(logging.getLogger().handlers)
    configure_logging("info")
    configure_logging("INFO")  # again: replaces, does not duplicate
    assert len(ours(before)) == 1
    log = logging.getLogger("gateway.test")
    log.info("hello %s", "world")
    log.debug("hidden")
    log.error("oops")
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries] == ["hello world", "oops"]
    assert [e["level"] for e in entries] == ["INFO", "ERROR"]
    assert {e["logger"] for e in entries} == {"gateway.test"}
    assert set(entries[0]) == {"time", "level", "logger", "message"}
    stamp = datetime.fromisoformat(entries[0]["time"])
    assert stamp.utcoffset() in (timedelta(hours=1), timedelta(hours=2))  # Europe/Oslo, with offset
    assert abs(stamp - datetime.now(UTC)) < timedelta(minutes=1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d", entries[0]["time"])


def test_json_masks_the_number_in_message_argument_exception_and_extra(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    stream = json_stderr(monkeypatch)
    configure_logging("DEBUG")
    log_everything(logging.getLogger("gateway.test"))
    out = stream.getvalue()
    assert_no_number(out)
    message, argument, failure, extra = (json.loads(line) for line in out.splitlines())
    assert message["message"] == f"in the message {MASK}"
    assert argument["message"] == f"as an argument {MASK}"
    assert failure["message"] == f"failed for {MASK}"
    assert failure["exception"].startswith("Traceback (most recent call last)")
    assert failure["exception"].endswith(f"ValueError: bad person {MASK}")
    assert extra["case"] == MASK
    assert extra["channel"] == f"spool {MASK}"
    assert extra["outbox_id"] == MASK  # a number shaped like an identity number is masked too
    assert extra["outcome"] == MASK


def test_json_carries_the_operator_fields_with_their_types(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = json_stderr(monkeypatch)
    configure_logging()
    fields: dict[str, Any] = {
        "channel": "spool",
        "case": "RUS-2026-0042",
        "outbox_id": 17,
        "attempt": 3,
        "duration_ms": 12.5,
        "outcome": "sent",
        "not_a_field": "left out",
    }
    logging.getLogger("gateway.outbox").info("outbox 17 delivered", extra=fields)
    (entry,) = (json.loads(line) for line in stream.getvalue().splitlines())
    del fields["not_a_field"]
    assert {k: entry[k] for k in fields} == fields
    assert "not_a_field" not in entry
    assert list(entry)[:4] == ["time", "level", "logger", "message"]


def test_json_formatter_masks_even_without_the_filter() -> None:
    try:
        fail_with_number()
    except ValueError:
        record = logging.LogRecord("x", logging.ERROR, __file__, 1, "p %s", (FNR,), sys.exc_info())
    record.__dict__["case"] = NBSP
    out = JsonFormatter().format(record)
    assert_no_number(out)
    entry = json.loads(out)
    assert (entry["message"], entry["case"]) == (f"p {MASK}", MASK)


def test_a_handler_writes_to_the_stderr_of_the_moment(monkeypatch: pytest.MonkeyPatch) -> None:
    first = json_stderr(monkeypatch)
    configure_logging()
    second = json_stderr(monkeypatch)  # as an in-process CLI test swaps it
    logging.getLogger("gateway.test").warning("where")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "where"


# --- journald ------------------------------------------------------------------------


def test_under_journald_each_json_line_carries_its_priority(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open(tmp_path / "journal", "w+") as journal:
        info = os.fstat(journal.fileno())
        monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
        monkeypatch.setattr(sys, "stderr", journal)
        configure_logging("debug")
        log = logging.getLogger("gateway.test")
        log.info("person %s", FNR)
        log.debug("detail")
        log.warning("careful")
        log.critical("down")
        log_everything(log)
        journal.flush()
        journal.seek(0)
        lines = journal.read().splitlines()
    prefixes = [line[:3] for line in lines]
    assert prefixes == ["<6>", "<7>", "<4>", "<2>", "<6>", "<6>", "<3>", "<4>"]
    entries = [json.loads(line[3:]) for line in lines]
    assert entries[0]["message"] == f"person {MASK}"
    assert f"ValueError: bad person {MASK}" in entries[6]["exception"]  # the traceback: one entry
    assert_no_number("\n".join(lines))
    # DEBUG was asked for, yet the scheduler's per-run chatter stays at WARNING.
    assert logging.getLogger("apscheduler.executors").level == logging.WARNING


def test_journal_stream_of_another_file_is_ignored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "other"
    other.write_text("")
    info = os.stat(other)
    monkeypatch.setenv("JOURNAL_STREAM", f"{info.st_dev}:{info.st_ino}")
    with open(tmp_path / "stderr", "w+") as stderr:
        monkeypatch.setattr(sys, "stderr", stderr)
        configure_logging()
        logging.getLogger("gateway.test").warning("hello")
        stderr.flush()
        stderr.seek(0)
        line = stderr.read()
    assert json.loads(line)["message"] == "hello"  # plain JSON, no <N>


def test_journal_formatter_prefixes_every_line() -> None:
    record = logging.LogRecord("x", logging.CRITICAL, __file__, 1, "a\nb", None, None)
    (line,) = JournalFormatter().format(record).split("\n")  # JSON keeps it on one line
    assert line.startswith("<2>{")
    assert json.loads(line[3:])["message"] == "a\nb"


# --- a terminal ------------------------------------------------------------------------


def read_terminal(master: int) -> str:
    os.set_blocking(master, False)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except (BlockingIOError, OSError):
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks).decode("utf-8").replace("\r\n", "\n")


def test_on_a_terminal_text_with_the_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    master, slave = os.openpty()
    try:
        with open(slave, "w", encoding="utf-8", closefd=False) as terminal:
            assert terminal.isatty()
            monkeypatch.setattr(sys, "stderr", terminal)
            configure_logging("Info")
            log = logging.getLogger("gateway.test")
            log.info("outbox delivered", extra={"case": "RUS-2026-0042", "attempt": 2})
            log_everything(log)
            terminal.flush()
            out = read_terminal(master)
    finally:
        os.close(slave)
        os.close(master)
    lines = out.splitlines()
    assert re.fullmatch(
        ZONED.pattern + r" INFO gateway\.test: outbox delivered \[case=RUS-2026-0042 attempt=2\]", lines[0]
    )
    stamp = datetime.fromisoformat(lines[0][:25])
    assert stamp.utcoffset() in (timedelta(hours=1), timedelta(hours=2))
    assert not out.lstrip().startswith("{")
    assert "Traceback (most recent call last)" in out
    assert f"ValueError: bad person {MASK}" in out
    assert f"[channel=spool {MASK} case={MASK} outbox_id={MASK} outcome={MASK}]" in out
    assert_no_number(out)


def test_text_formatter_shows_the_offset() -> None:
    record = logging.LogRecord("gateway.x", logging.INFO, __file__, 1, "hi", None, None)
    record.created = datetime(2026, 12, 1, 21, 7, 49, tzinfo=UTC).timestamp()
    assert TextFormatter().format(record) == "2026-12-01 22:07:49+01:00 INFO gateway.x: hi"
    record.created = datetime(2026, 7, 1, 8, 0, tzinfo=UTC).timestamp()
    assert TextFormatter().format(record).startswith("2026-07-01 10:00:00+02:00 ")


# --- levels ----------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "level"), [("debug", 10), ("Info", 20), (" warning ", 30), ("ERROR", 40)])
def test_level_names_in_any_case(monkeypatch: pytest.MonkeyPatch, name: str, level: int) -> None:
    json_stderr(monkeypatch)
    configure_logging(name)
    assert logging.getLogger().level == level


def test_unknown_level_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown log level"):
        configure_logging("LOUD")


# --- the routine's lines, from a real gateway ------------------------------------------


def _lines(stream: io.StringIO, prefix: str) -> list[dict[str, Any]]:
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    return [e for e in entries if e["message"].startswith(prefix)]


def _take(gw: Gateway, data: bytes, kind: str = "email") -> str:
    external = "sha256:" + hashlib.sha256(data).hexdigest()
    return intake.process(gw, RawMessage("spool", external, data, kind, gw.clock.now())).outcome  # type: ignore[arg-type]


def test_every_send_attempt_command_reminder_and_digest_leaves_a_line_with_its_fields(
    monkeypatch: pytest.MonkeyPatch, gw: Gateway, clock: SimulatedClock
) -> None:
    """What the operator greps for (docs/operations-reference.md, "The routine log
    lines"), as JSON keys; and no identity number, name, place or staff address."""
    stream = json_stderr(monkeypatch)
    configure_logging("INFO")
    assert _take(gw, factories.order_xml(national_id=FNR, last_name="Særnavnsen"), "xml") == "case"
    number = f"RUS-{local_today(clock.now()).year}-0001"
    tomorrow = gw.calendar.add_working_days(local_today(clock.now()), 1)
    booking = f"INNKALT {tomorrow:%d.%m.%Y} 10:00 Hemmeligveien 7"
    assert _take(gw, factories.mail(subject=f"[{number}] Re: Ny sak", body=booking)) == "command"
    assert _take(gw, factories.mail(subject=f"[{number}] Re: Ny sak", body="FROBNISER")) == "command"
    report = reminders.tick(gw)
    assert report.reminders and report.digests

    (command,) = _lines(stream, f"command on {number}: summoned, reply outbox ")
    assert (command["case"], command["outcome"]) == (number, "summoned")
    assert command["message"] == f"command on {number}: summoned, reply outbox {command['outbox_id']}"
    (rejected,) = _lines(stream, f"command on {number}: rejected (CommandError), reply outbox ")
    assert rejected["outcome"] == "rejected" and rejected["case"] == number
    (changed,) = _lines(stream, f"case {number}: summoned by staff -> summoned")
    assert (changed["case"], changed["outcome"]) == (number, "summoned")
    (opened,) = _lines(stream, f"case {number} opened for unit testdal")
    assert (opened["case"], opened["outcome"]) == (number, "opened")
    (reminder,) = _lines(stream, f"reminder meeting-next-day for {number}: outbox ")
    assert (reminder["case"], reminder["outcome"]) == (number, "enqueued")
    assert isinstance(reminder["outbox_id"], int)
    (digest,) = _lines(stream, f"digest for unit testdal, {local_today(clock.now())}: outbox ")
    assert digest["outcome"] == "enqueued" and "case" not in digest

    spool = gw.channel("spool")
    real_send = spool.send
    failures = iter([TransientError("spool: writing mail failed (ENOSPC)"), PermanentError("spool: EACCES")])
    spool.send = lambda message: (_ for _ in ()).throw(next(failures))  # type: ignore[method-assign]
    assert outbox.dispatch_due(gw, limit=1).retried == 1
    assert outbox.dispatch_due(gw, limit=1).dead == 1
    spool.send = real_send  # type: ignore[method-assign]
    with gw.session() as s:
        waiting = s.scalars(select(OutboxItem).where(OutboxItem.status == "pending")).first()
        assert waiting is not None
        waiting.payload = None  # nothing left to send: the row is cancelled when claimed
    stats = outbox.dispatch_due(gw)
    assert stats.sent and stats.cancelled == 1

    (retried,) = [e for e in _lines(stream, "outbox ") if "transient" in e["message"]]
    assert (retried["level"], retried["outcome"], retried["attempt"]) == ("WARNING", "retried", 1)
    (dead,) = [e for e in _lines(stream, "outbox ") if "dead letter" in e["message"]]
    assert (dead["level"], dead["outcome"]) == ("ERROR", "dead")
    (cancelled,) = [
        e for e in _lines(stream, "outbox ") if e["message"].endswith("cancelled: no longer to be sent")
    ]
    assert cancelled["outcome"] == "cancelled" and "duration_ms" not in cancelled
    sent = [e for e in _lines(stream, "outbox ") if " delivered via spool" in e["message"]]
    assert len(sent) == stats.sent
    for entry in [retried, dead, *sent]:
        assert {"channel", "outbox_id", "attempt", "duration_ms", "outcome"} <= set(entry), entry
        assert entry["channel"] == "spool" and isinstance(entry["duration_ms"], int)
    for entry in sent:
        assert entry["outcome"] == "sent"
        assert entry["message"] == (
            f"outbox {entry['outbox_id']} ({entry['message'].split('(')[1].split(')')[0]}) delivered via "
            f"spool, attempt {entry['attempt']}, {entry['duration_ms']} ms"
        )
    assert any(e.get("case") == number for e in sent)  # the case's alert, reply and reminder

    out = stream.getvalue()
    assert_no_number(out)
    for private in ("Særnavnsen", "Hemmeligveien", factories.STAFF, "FROBNISER"):
        assert private not in out, private
