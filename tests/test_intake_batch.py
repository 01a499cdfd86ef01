"""A backlog is taken in batches (issue #8) without weakening any intake guarantee.

One transaction per batch, a savepoint per message: one bad message spoils nothing
else, nothing is acknowledged before the batch's commit, a message that kills the
process is still quarantined after ``gateway.max_intake_attempts`` crashes, and the
innocent messages of its batch are neither lost nor counted as crashes.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event, func, select

from connectors.spool.inbox import drop_file
from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.intake import batch, pipeline
from gateway.models import Case, InboundMessage, IntakeAttempt, QuarantineEntry
from gateway.ops import steps
from gateway.ports import RawMessage
from tests import factories

MAX_ATTEMPTS = 3  # the default of gateway.max_intake_attempts
RECEIVED = datetime(2027, 1, 4, 9, tzinfo=UTC)
POISON = b"<!-- poison -->"


@pytest.fixture(autouse=True)
def _unhurried(monkeypatch: pytest.MonkeyPatch) -> None:
    """A busy CI machine must not end a batch early where a test counts on one batch;
    the tests of the time budget set it themselves."""
    monkeypatch.setattr(batch, "MAX_SECONDS", 600.0)


def orders(n: int, *, start: int = 0) -> list[bytes]:
    return [factories.order_xml(case_reference=f"3{start + i:07d}") for i in range(n)]


def raw(data: bytes, kind: str = "xml") -> RawMessage:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    return RawMessage("spool", digest, data, kind, RECEIVED)


def count(gw: Gateway, model: Any) -> int:
    with gw.session() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


def test_a_batch_is_one_commit_and_its_results_are_in_order(gw_sqlite: Gateway) -> None:
    gw = gw_sqlite
    data = orders(40)
    messages = [raw(d) for d in data] + [raw(data[3])]  # the same file dropped twice
    commits = 0

    @event.listens_for(gw.engine, "commit")
    def _count(_conn: Any) -> None:
        nonlocal commits
        commits += 1

    results = batch.process_batch(gw, messages)
    assert [r.outcome if r else None for r in results] == ["case"] * 40 + ["duplicate"]
    numbers = [r.case_number for r in results[:40] if r]
    assert len(set(numbers)) == 40
    # a read for suspects, the attempt rows, the batch: not two commits per message
    assert commits <= 3
    assert count(gw, Case) == 40 and count(gw, InboundMessage) == 40
    assert count(gw, IntakeAttempt) == 0


def test_a_message_that_raises_is_rolled_back_alone_and_quarantined(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gw_sqlite
    data = orders(5)
    judge = pipeline._judge

    def buggy(gw: Gateway, session: Any, message: RawMessage, inbound: Any) -> Any:
        if message.content == data[2]:
            raise RuntimeError("a bug in a parser")
        return judge(gw, session, message, inbound)

    monkeypatch.setattr(pipeline, "_judge", buggy)
    results = batch.process_batch(gw, [raw(d) for d in data])
    assert [r.outcome if r else None for r in results] == ["case", "case", "quarantined", "case", "case"]
    assert results[2] is not None and "internal error (RuntimeError)" in (results[2].reason or "")
    assert count(gw, Case) == 4
    with gw.session() as session:
        assert session.scalars(select(QuarantineEntry.reason)).all() == [results[2].reason]
    assert count(gw, IntakeAttempt) == 0


def test_a_full_disk_fails_the_whole_batch_and_commits_nothing(gw_sqlite: Gateway) -> None:
    gw = gw_sqlite
    messages = [raw(d) for d in orders(10)]
    full = {"on": True}

    @event.listens_for(gw.engine, "begin")
    def _cap(conn: Any) -> None:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        limit = pages if full["on"] else 1073741823
        conn.exec_driver_sql(f"PRAGMA max_page_count = {limit}")

    results = batch.process_batch(gw, messages)
    assert results and all(r is not None and pipeline.is_storage_trouble(r) for r in results)
    full["on"] = False
    assert count(gw, Case) == 0  # nothing half-taken: the batch rolled back as a whole
    again = batch.process_batch(gw, messages)
    assert [r.outcome if r else None for r in again] == ["case"] * 10
    assert count(gw, IntakeAttempt) == 0


def test_the_batch_ends_at_its_time_budget_and_the_rest_is_untouched(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gw_sqlite
    monkeypatch.setattr(batch, "MAX_SECONDS", 0.0)  # only the first message fits
    messages = [raw(d) for d in orders(4)]
    results = batch.process_batch(gw, messages)
    assert results[0] is not None and results[0].outcome == "case"
    assert results[1:] == [None, None, None]
    assert count(gw, InboundMessage) == 1
    assert count(gw, IntakeAttempt) == 0  # the untouched ones are not crash suspects


def test_a_poll_acknowledges_nothing_before_the_batch_commits(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gw_sqlite
    folder = Path(gw.channel("spool").inbox)
    for i, data in enumerate(orders(6)):
        drop_file(folder, f"ordre-{i}.xml", data)
    seen_at_ack: list[int] = []
    channel = gw.channel("spool")
    plain = channel.acknowledge

    def acknowledge(message: RawMessage) -> None:
        seen_at_ack.append(count(gw, InboundMessage))  # read in a separate session
        plain(message)

    monkeypatch.setattr(channel, "acknowledge", acknowledge)
    result = steps.poll_channel(gw, channel, steps.CycleReport())
    assert (result.result, result.taken) == ("ok", 6)
    assert seen_at_ack == [6] * 6  # every acknowledgement came after the one commit
    assert not list(folder.glob("*.xml"))


KILLER = textwrap.dedent(
    """
    import os, sys
    from datetime import UTC, datetime
    from pathlib import Path
    from gateway.app import open_gateway
    from gateway.clock import SimulatedClock
    from gateway.config import load_settings
    from gateway.intake import pipeline
    from gateway.ops import steps

    judge = pipeline._judge

    def judge_or_die(gw, session, message, inbound):
        if b"<!-- poison -->" in message.content:
            os._exit(137)  # what the OOM killer leaves behind: no cleanup at all
        return judge(gw, session, message, inbound)

    pipeline._judge = judge_or_die
    clock = SimulatedClock(datetime(2027, 1, 4, 9, tzinfo=UTC))
    gw = open_gateway(load_settings(Path(sys.argv[1])), clock=clock)
    for channel in gw.inbound_channels():
        steps.poll_channel(gw, channel, steps.CycleReport())
    """
)


def test_a_message_that_kills_a_batch_is_quarantined_and_the_innocent_are_taken(
    tmp_path: Path, clock: SimulatedClock
) -> None:
    cfg = factories.write_config(tmp_path / "gw", database=f"sqlite:///{tmp_path / 'gw' / 'russak.db'}")
    open_gateway(load_settings(cfg), clock=clock, migrate=True).close()
    folder = tmp_path / "gw" / "spool" / "inbox"
    folder.mkdir(parents=True, exist_ok=True)
    good = orders(12)
    poison = factories.order_xml(case_reference="39999999").replace(b"<OrdreId>", POISON + b"<OrdreId>", 1)
    assert POISON in poison
    for i, data in enumerate([*good[:5], poison, *good[5:]]):
        drop_file(folder, f"ordre-{i:02d}.xml", data)
    script = tmp_path / "killer.py"
    script.write_text(KILLER)
    runs = []
    for _ in range(MAX_ATTEMPTS + 3):
        done = subprocess.run(
            [sys.executable, str(script), str(cfg)], timeout=120, capture_output=True, text=True
        )
        runs.append(done.returncode)
        if done.returncode == 0:
            break
        assert done.returncode == 137, done.stderr
    # the batch dies once, then the poison dies alone until its attempts are used up
    assert runs == [137] * MAX_ATTEMPTS + [0]
    gw = open_gateway(load_settings(cfg), clock=clock)
    try:
        with gw.session() as session:
            reasons = session.scalars(select(QuarantineEntry.reason)).all()
            assert reasons == [f"crashed the gateway {MAX_ATTEMPTS} times"]
            assert session.scalar(select(func.count()).select_from(Case)) == len(good)
            assert session.scalars(select(IntakeAttempt)).all() == []
        assert not list(folder.glob("*.xml"))  # everything taken, so acknowledged
    finally:
        gw.close()


def test_a_poll_carries_what_a_batch_did_not_reach_in_time_into_the_next(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gw_sqlite
    monkeypatch.setattr(batch, "MAX_SECONDS", 0.0)  # a slow machine: one message per batch fits
    monkeypatch.setattr(batch, "MAX_MESSAGES", 4)
    folder = Path(gw.channel("spool").inbox)
    for i, data in enumerate(orders(9)):
        drop_file(folder, f"ordre-{i}.xml", data)
    result = steps.poll_channel(gw, gw.channel("spool"), steps.CycleReport())
    assert (result.result, result.taken) == ("ok", 9)  # one poll empties the backlog
    assert not list(folder.glob("*.xml"))
    assert count(gw, Case) == 9 and count(gw, IntakeAttempt) == 0
