"""The spool inbox attacked from outside: slow writers, clock steps, hard links,
world-writable folders, hostile names, droppers' modes, a full disk, and retention."""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import connectors.spool as spool_package
from connectors.spool import DEFAULT_SETTLE_SECONDS, SpoolChannel, drop_file
from connectors.spool.files import NAME_BUDGET, kept_names
from connectors.spool.inbox import Settle
from gateway.clock import SimulatedClock
from gateway.ports import Attachment, OutboundMessage, PermanentError, RawMessage, TransientError
from tests.factories import fnr, order_xml

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORDER = b"<Oppmoteordre><OrdreId>6f1c2a8e</OrdreId></Oppmoteordre>\n"
IS_ROOT = os.geteuid() == 0


class NoCursor:
    def get(self, key: str) -> str | None:
        raise AssertionError("spool must not use the cursor")

    def set(self, key: str, value: str) -> None:
        raise AssertionError("spool must not use the cursor")


CURSOR = NoCursor()


class Ticks:
    """A monotonic clock the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


def channel_at(
    root: Path, clock: SimulatedClock, *, monotonic: Ticks | None = None, **options: Any
) -> SpoolChannel:
    """A channel; with ``monotonic``, one whose settle and log-rate clock the test moves."""
    if monotonic is None:
        return SpoolChannel("spool", root, clock=clock, **options)
    saved = spool_package.monotonic
    spool_package.monotonic = monotonic
    try:
        return SpoolChannel("spool", root, clock=clock, **options)
    finally:
        spool_package.monotonic = saved


def names(channel: SpoolChannel) -> list[str]:
    return [m.metadata["filename"] for m in channel.poll(CURSOR)]


def files_in(folder: Path) -> list[str]:
    return sorted(os.listdir(folder)) if folder.exists() else []


# -- settling ----------------------------------------------------------------------


def test_the_default_settle_is_not_zero(tmp_path: Path, clock: SimulatedClock) -> None:
    assert DEFAULT_SETTLE_SECONDS >= 1
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, monotonic=ticks)
    drop_file(channel.inbox, "ordre.xml", ORDER)
    assert names(channel) == []  # first sight
    ticks.now += DEFAULT_SETTLE_SECONDS - 0.01
    assert names(channel) == []
    ticks.now += 0.01
    assert names(channel) == ["ordre.xml"]


def test_settle_zero_takes_a_file_at_first_sight(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0)
    drop_file(channel.inbox, "ordre.xml", ORDER)
    assert names(channel) == ["ordre.xml"]


def test_a_file_from_the_future_is_taken_after_settling(tmp_path: Path, clock: SimulatedClock) -> None:
    """The clock was stepped back after the file was written: its mtime is ahead of now."""
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=5, monotonic=ticks)
    path = drop_file(channel.inbox, "ordre.xml", ORDER)
    future = time.time() + 86_400 * 30
    os.utime(path, (future, future))
    assert names(channel) == []
    ticks.now += 5
    assert names(channel) == ["ordre.xml"]


def test_a_backward_clock_step_does_not_block_intake(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=5, monotonic=ticks)
    drop_file(channel.inbox, "ordre.xml", ORDER)
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() - 3600)  # the wall clock steps back an hour
    assert names(channel) == []
    ticks.now += 5
    assert names(channel) == ["ordre.xml"]


def test_a_forward_clock_step_does_not_take_a_file_being_written(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=5, monotonic=ticks)
    path = channel.inbox / "ordre.xml"
    with path.open("wb") as writer:
        writer.write(b"<Oppmoteordre>")
        writer.flush()
        old = time.time() - 86_400  # looks a day old (the clock stepped forward)
        os.utime(path, (old, old))
        real_time = time.time
        monkeypatch.setattr(time, "time", lambda: real_time() + 86_400)
        assert names(channel) == []
        ticks.now += 4
        writer.write(b"<OrdreId>")  # still writing: the observation starts over
        writer.flush()
        assert names(channel) == []
        ticks.now += 4
        assert names(channel) == []
    ticks.now += 5
    (message,) = channel.poll(CURSOR)
    assert message.content == b"<Oppmoteordre><OrdreId>"


SLOW_WRITER = r"""
import sys, time
path, chunks = sys.argv[1], int(sys.argv[2])
with open(path, "wb") as handle:           # the final name, kept open, written slowly
    for i in range(chunks):
        handle.write(b"<chunk>%d</chunk>\n" % i)
        handle.flush()
        time.sleep(0.1)
"""


def test_a_slow_writer_that_keeps_its_file_open_is_left_alone(tmp_path: Path, clock: SimulatedClock) -> None:
    """A real process writes the final name in place for ~1.5 s; polls every 50 ms."""
    channel = channel_at(tmp_path, clock, settle_seconds=0.4)
    chunks = 15
    writer = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITER, str(channel.inbox / "ordre.xml"), str(chunks)]
    )
    taken: list[RawMessage] = []
    while writer.poll() is None:
        taken.extend(channel.poll(CURSOR))
        time.sleep(0.05)
    assert writer.returncode == 0
    assert taken == [], "a file still being written was taken"
    deadline = time.monotonic() + 5
    while not taken and time.monotonic() < deadline:
        taken.extend(channel.poll(CURSOR))
        time.sleep(0.05)
    (message,) = taken
    assert message.content == b"".join(b"<chunk>%d</chunk>\n" % i for i in range(chunks))


def test_temporary_names_are_ignored_however_long_they_wait(tmp_path: Path, clock: SimulatedClock) -> None:
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=1, monotonic=ticks)
    for name in (".ordre.xml", "ordre.xml.tmp", "ordre.xml.part", "ORDRE.XML.PART"):
        (channel.inbox / name).write_bytes(ORDER)
    for _ in range(3):
        assert names(channel) == []
        ticks.now += 10


def test_observations_are_pruned_and_bounded(tmp_path: Path, clock: SimulatedClock) -> None:
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=1, monotonic=ticks)
    for i in range(20):
        drop_file(channel.inbox, f"o{i}.xml", ORDER)
    assert names(channel) == []
    settle: Settle = channel._in._settle
    assert len(settle._seen) == 20
    for path in channel.inbox.iterdir():
        path.unlink()
    assert names(channel) == []
    assert settle._seen == {}

    small = Settle(1.0, limit=3)
    signature = (1, 2, 3, 4, 5, 1)
    assert [small.ready(f"f{i}", signature, 0.0) for i in range(5)] == [False] * 5
    assert len(small._seen) == 3
    assert [small.ready(f"f{i}", signature, 1.0) for i in range(5)] == [True, True, True, False, False]
    small.prune({"f3", "f4"})
    assert small._seen == {}


# -- hard links --------------------------------------------------------------------


def test_a_hard_link_is_refused_unread_and_moved_to_rejected(
    tmp_path: Path, clock: SimulatedClock, caplog: pytest.LogCaptureFixture
) -> None:
    key = tmp_path / "russak.key"
    key.write_bytes(b"SECRET-KEY-MATERIAL")
    key.chmod(0o400)
    root = tmp_path / "spool"
    root.mkdir()
    channel = channel_at(root, clock, settle_seconds=0)
    number = fnr(date(1990, 1, 2))
    os.link(key, channel.inbox / f"ordre-{number}.xml")
    with caplog.at_level(logging.WARNING, logger="connectors.spool"):
        assert list(channel.poll(CURSOR)) == []
        assert list(channel.poll(CURSOR)) == []
    assert files_in(channel.inbox) == []
    (moved,) = files_in(channel.rejected)
    assert moved.startswith("refused-link-") and moved.endswith(".xml")
    assert os.path.samefile(channel.rejected / moved, key)  # the link moved, nothing copied
    assert stat.S_IMODE(key.stat().st_mode) == 0o400  # and nothing chmodded through it
    assert key.read_bytes() == b"SECRET-KEY-MATERIAL"
    warnings = [r for r in caplog.records if "hard links" in r.getMessage()]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "rejected/refused-link-" in text and "rename it into inbox/" in text
    assert number not in caplog.text


def test_a_hard_link_that_cannot_be_moved_is_left_and_warned_about_once(
    tmp_path: Path, clock: SimulatedClock, caplog: pytest.LogCaptureFixture
) -> None:
    secret = tmp_path / "database.sqlite"
    secret.write_bytes(b"<Oppmoteordre>not for the inbox</Oppmoteordre>")
    root = tmp_path / "spool"
    root.mkdir()
    channel = channel_at(root, clock, settle_seconds=0)
    (root / "rejected").write_bytes(b"")  # not a folder: the move fails
    os.link(secret, channel.inbox / "ordre.xml")
    drop_file(channel.inbox, "annen.xml", ORDER)
    seen: list[RawMessage] = []
    with caplog.at_level(logging.WARNING, logger="connectors.spool"):
        for _ in range(4):
            seen.extend(channel.poll(CURSOR))
    assert {m.metadata["filename"] for m in seen} == {"annen.xml"}
    assert all(b"not for the inbox" not in m.content for m in seen)
    assert files_in(channel.inbox) == ["annen.xml", "ordre.xml"]
    warnings = [r.getMessage() for r in caplog.records if "hard links" in r.getMessage()]
    assert len(warnings) == 1
    assert "left it in inbox/" in warnings[0] and "rm" in warnings[0]


def test_a_file_linked_after_the_scan_is_not_read(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    import connectors.spool.inbox as inbox_module
    from connectors.spool.files import open_regular as real_open

    channel = channel_at(tmp_path, clock, settle_seconds=0)
    path = drop_file(channel.inbox, "ordre.xml", ORDER)

    def link_then_open(target: Path) -> object:
        os.link(path, tmp_path / "elsewhere.xml")
        return real_open(target)

    monkeypatch.setattr(inbox_module, "open_regular", link_then_open)
    assert list(channel.poll(CURSOR)) == []


# -- world-writable folders and check() --------------------------------------------


@pytest.mark.parametrize("folder", ["inbox", "."])
def test_a_world_writable_inbox_or_root_stops_intake(
    tmp_path: Path, clock: SimulatedClock, caplog: pytest.LogCaptureFixture, folder: str
) -> None:
    ticks = Ticks()
    channel = channel_at(tmp_path, clock, settle_seconds=0, monotonic=ticks)
    drop_file(channel.inbox, "ordre.xml", ORDER)
    target = (tmp_path / folder).resolve()
    target.chmod(0o777)
    label = "inbox/" if folder == "inbox" else "the spool root"
    with caplog.at_level(logging.WARNING, logger="connectors.spool"):
        for _ in range(5):
            with pytest.raises(PermanentError) as info:
                list(channel.poll(CURSOR))
            ticks.now += 10
        ticks.now += 20  # a minute after the first
        with pytest.raises(PermanentError):
            list(channel.poll(CURSOR))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"spool: {label} is world-writable")
    assert message.endswith(f"fix: chmod o-w {target}")
    assert len([r for r in caplog.records if "world-writable" in r.getMessage()]) == 2
    target.chmod(0o700)
    assert names(channel) == ["ordre.xml"]


@pytest.mark.parametrize("kind", ["notice", "mail"])
def test_a_world_writable_outbox_or_mail_folder_refuses_to_send(
    tmp_path: Path, clock: SimulatedClock, kind: str
) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0)
    folder = channel.outbox if kind == "notice" else channel.mail
    folder.chmod(0o777)
    message = OutboundMessage(
        key="k",
        kind=kind,  # type: ignore[arg-type]
        recipients=("a@kommune.example",),
        subject="s",
        body="b",
        attachments=(Attachment("m.xml", "application/xml", b"<m/>"),),
    )
    with pytest.raises(PermanentError, match=rf"{folder.name}/ is world-writable.*chmod o-w {folder}$"):
        channel.send(message)
    assert files_in(folder) == [] and files_in(channel.delivered) == []
    folder.chmod(0o700)
    assert channel.send(message).duplicate is False


def test_a_world_writable_processed_folder_is_not_used(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0, keep_processed=True)
    channel.processed.chmod(0o777)
    drop_file(channel.inbox, "ordre.xml", ORDER)
    (message,) = channel.poll(CURSOR)
    with pytest.raises(PermanentError, match="processed/ is world-writable"):
        channel.acknowledge(message)
    assert files_in(channel.inbox) == ["ordre.xml"] and files_in(channel.processed) == []


def test_check_lists_the_problems(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = channel_at(tmp_path, clock)
    assert channel.check() == []
    channel.inbox.chmod(0o777)
    channel.mail.rmdir()
    channel.outbox.rmdir()
    channel.outbox.write_bytes(b"")
    (tmp_path / "rejected").mkdir(mode=0o700)
    (tmp_path / "rejected").chmod(0o757)
    problems = channel.check()
    assert problems == [
        f"spool: inbox/ is world-writable, so any local user could drop or swap files in it; "
        f"refusing to use it; fix: chmod o-w {channel.inbox}",
        f"spool: outbox/ is not a directory ({channel.outbox}); move it away",
        f"spool: mail/ is missing ({channel.mail}); create it (mode 0700) or restart",
        f"spool: rejected/ is world-writable, so any local user could drop or swap files in it; "
        f"refusing to use it; fix: chmod o-w {channel.rejected}",
    ]


def test_check_reports_a_folder_this_process_cannot_write(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = channel_at(tmp_path, clock)
    if IS_ROOT:  # root may write anything: pretend to be a service user for outbox/
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode: Path(p) != channel.outbox and real_access(p, mode))
    else:
        channel.outbox.chmod(0o500)
    try:
        (problem,) = channel.check()
    finally:
        channel.outbox.chmod(0o700)
    assert problem.startswith("spool: outbox/ is not writable by this process (uid ")


# -- names -------------------------------------------------------------------------


LONG_NAMES = [
    "a" * 246 + ".xml",  # 250 characters
    "b" * 251 + ".eml",  # NAME_MAX
    "ø" * 125 + ".xml",  # 254 bytes in UTF-8
    "ordre " + "æ" * 100 + " (kopi).XML",
]


@pytest.mark.parametrize("name", LONG_NAMES, ids=["250", "255", "utf8-254", "spaces"])
@pytest.mark.parametrize("mode", ["delete", "processed", "rejected"])
def test_names_near_name_max_never_break_the_acknowledgement(
    tmp_path: Path, clock: SimulatedClock, name: str, mode: str
) -> None:
    options: dict[str, Any] = {"settle_seconds": 0, "keep_processed": mode == "processed"}
    if mode == "rejected":
        options["max_bytes"] = 8
    channel = channel_at(tmp_path, clock, **options)
    for content in (b"1" + ORDER, b"2" + ORDER):  # the second under the same name
        drop_file(channel.inbox, name, content)
        (message,) = channel.poll(CURSOR)
        channel.acknowledge(message)
        assert files_in(channel.inbox) == []
    folder = {"processed": channel.processed, "rejected": channel.rejected}.get(mode)
    if folder is not None:
        kept = files_in(folder)
        assert len(kept) == 2
        for kept_name in kept:
            assert len(kept_name) <= NAME_BUDGET and re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", kept_name)
            assert kept_name.lower().endswith(name[-4:].lower())
        assert {(folder / k).read_bytes() for k in kept} == {b"1" + ORDER, b"2" + ORDER}


@given(name=st.text(min_size=1, max_size=255).filter(lambda n: "/" not in n and "\0" not in n))
def test_kept_names_are_bounded_safe_and_distinct(name: str) -> None:
    first, second = kept_names(name, "0123456789abcdef")
    for kept in (first, second):
        assert len(kept) <= NAME_BUDGET
        assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", kept)
    assert first != second


def test_two_long_names_that_clean_up_alike_stay_apart(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0, keep_processed=True)
    for i, name in enumerate(["x" * 200 + "æ.xml", "x" * 200 + "ø.xml"]):
        drop_file(channel.inbox, name, ORDER + bytes([48 + i]))
        (message,) = channel.poll(CURSOR)
        channel.acknowledge(message)
    assert len(files_in(channel.processed)) == 2


# -- modes and times of kept files -------------------------------------------------


@pytest.mark.parametrize("mode", ["processed", "rejected"])
def test_kept_files_are_the_gateways_own(tmp_path: Path, clock: SimulatedClock, mode: str) -> None:
    options: dict[str, Any] = {"settle_seconds": 0, "keep_processed": True}
    if mode == "rejected":
        options["max_bytes"] = 8
    channel = channel_at(tmp_path, clock, **options)
    data = order_xml()
    path = drop_file(channel.inbox, "ordre.xml", data)
    path.chmod(0o666)  # as a careless dropper leaves it
    old = time.time() - 86_400 * 400
    os.utime(path, (old, old))
    (message,) = channel.poll(CURSOR)
    clock.advance(timedelta(days=2))
    old_umask = os.umask(0)
    try:
        channel.acknowledge(message)
    finally:
        os.umask(old_umask)
    folder = channel.processed if mode == "processed" else channel.rejected
    kept = folder / "ordre.xml"
    info = kept.stat()
    assert stat.S_IMODE(info.st_mode) == 0o600
    assert info.st_uid == os.geteuid()
    assert info.st_nlink == 1
    assert kept.read_bytes() == data  # whole, even when only a part was read
    assert info.st_mtime_ns == int(clock.now().timestamp()) * 1_000_000_000
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700


# -- retention ---------------------------------------------------------------------


def test_purge_deletes_kept_files_recorded_before_the_cutoff(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0, keep_processed=True, max_bytes=64)
    assert channel.purge(clock.now()) == 0  # nothing kept yet, rejected/ does not exist
    for day, (name, size) in enumerate([("a.xml", 10), ("b.xml", 100), ("c.xml", 10), ("d.eml", 100)]):
        drop_file(channel.inbox, name, bytes([65 + day]) * size)
        (message,) = channel.poll(CURSOR)
        channel.acknowledge(message)
        clock.advance(timedelta(days=30))
    (channel.processed / "subfolder").mkdir()
    cutoff = START + timedelta(days=45)  # after a.xml and b.xml were kept
    assert channel.purge(cutoff) == 2
    assert files_in(channel.processed) == ["c.xml", "subfolder"]
    assert files_in(channel.rejected) == ["d.eml"]
    assert channel.purge(cutoff) == 0
    assert channel.purge(clock.now()) == 2
    with pytest.raises(ValueError):
        channel.purge(datetime(2030, 1, 1))  # naive on purpose


# -- storage errors ----------------------------------------------------------------


def test_a_full_disk_while_keeping_a_file_is_transient_and_loses_nothing(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0, keep_processed=True)
    number = fnr(date(1991, 3, 4))
    drop_file(channel.inbox, f"ordre-{number}.xml", ORDER)
    (message,) = channel.poll(CURSOR)

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full)
        with pytest.raises(TransientError) as info:
            channel.acknowledge(message)
    assert (
        str(info.value) == "spool: storage full writing processed/ (ENOSPC); free space on the spool volume"
    )
    assert files_in(channel.inbox) == [f"ordre-{number}.xml"]
    assert files_in(channel.processed) == []
    channel.acknowledge(message)
    assert files_in(channel.processed) == [f"ordre-{number}.xml"]


@pytest.mark.parametrize(
    ("code", "kind", "text"),
    [
        (errno.EDQUOT, TransientError, "spool: storage full writing outbox/ (EDQUOT); free space on the "
         "spool volume or raise the quota"),
        (errno.EROFS, PermanentError, "spool: cannot write outbox/ (EROFS): the spool volume is mounted "
         "read-only; remount it read-write"),
        (errno.EACCES, PermanentError, "spool: permission denied writing outbox/ (EACCES); give the "
         "service user read and write access to the folder"),
    ],
)  # fmt: skip
def test_storage_errors_name_the_folder_and_the_fix(
    tmp_path: Path, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch, code: int, kind: type, text: str
) -> None:
    channel = channel_at(tmp_path, clock, settle_seconds=0)
    real_open = os.open

    def failing(path: str, flags: int, mode: int = 0o777, **kwargs: object) -> int:
        if flags & os.O_CREAT:
            raise OSError(code, os.strerror(code), path)
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", failing)
    message = OutboundMessage(
        key=f"notice:{fnr(date(1992, 5, 6))}",
        kind="notice",
        recipients=("p@example.org",),
        subject="s",
        body="b",
        attachments=(Attachment("m.xml", "application/xml", b"<m/>"),),
    )
    with pytest.raises(kind) as info:
        channel.send(message)
    assert str(info.value) == text
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.filename is None
