"""Random sequences of orders, staff mails, replays, automatic replies, clock steps,
crashes and restores, through the real intake, case services, outbox and spool.

After every step the database is held against what is true by the clock:

- no notice carries a breach that did not happen (a no-show needs a booked, summoned
  meeting whose start has passed; a missed test a registered test not taken);
- a reportable breach is never hidden (the case has a notice drafted, queued or sent);
- nothing is counted twice (one attendance per day, one test per day);
- no message is lost or doubled (each distinct staff mail gets one reply, a replay or
  an automatic mail none; each notice reaches the police folder once).
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
import tempfile
from contextlib import closing, suppress
from datetime import UTC, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from sqlalchemy import select

from gateway import cases
from gateway.app import open_gateway
from gateway.clock import OSLO, SimulatedClock, local_today
from gateway.config import load_settings
from gateway.delivery import outbox
from gateway.domain import notices
from gateway.domain.lifecycle import TransitionError
from gateway.intake import pipeline as intake
from gateway.models import Case, OutboxItem
from gateway.ports import RawMessage
from gateway.staff.commands import Command, perform
from tests import factories

pytestmark = pytest.mark.slow

START = datetime(2027, 2, 1, 8, 0, tzinfo=UTC)  # a Monday; the rules do not care which


class Boom(Exception):
    """A crash in the middle of a transaction."""


class CaseLife(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = Path(tempfile.mkdtemp(prefix="russak-rules-"))
        self.clock = SimulatedClock(START)
        self.db = self.dir / "russak.db"
        self.cfg = factories.write_config(self.dir, database=f"sqlite:///{self.db}")
        self.gw = open_gateway(load_settings(self.cfg), clock=self.clock, migrate=True)
        self.numbers: list[str] = []
        self.sent: list[bytes] = []  # distinct staff mails, as delivered the first time
        self.expected_replies = 0
        self.snapshot: tuple[Path, list[str], list[bytes], int] | None = None

    def teardown(self) -> None:
        self.gw.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    # inputs -----------------------------------------------------------------------------------

    def _take(self, data: bytes, kind: str = "email") -> intake.IntakeResult:
        external = "sha256:" + hashlib.sha256(data).hexdigest()
        return intake.process(self.gw, RawMessage("spool", external, data, kind, self.clock.now()))  # type: ignore[arg-type]

    def _mail(self, number: str, line: str) -> None:
        data = factories.mail(subject=f"Re: [{number}]", body=line, when=self.clock.now())
        result = self._take(data)
        assert result.outcome == "command", result
        self.sent.append(data)
        self.expected_replies += 1

    def _today(self) -> str:
        day = local_today(self.clock.now())
        return f"{day.day}.{day.month}.{day.year}"

    @initialize(required=st.integers(1, 2), tests=st.integers(0, 1))
    def open_case(self, required: int, tests: int) -> None:
        result = self._take(factories.order_xml(attendances=required, tests=tests), kind="xml")
        assert result.case_number
        self.numbers.append(result.case_number)

    @rule(days=st.integers(0, 6), hour=st.none() | st.integers(8, 15))
    def book(self, days: int, hour: int | None) -> None:
        day = local_today(self.clock.now()) + timedelta(days=days)
        self._mail(
            self.numbers[0], f"INNKALT {day.day}.{day.month}.{day.year}" + (f" {hour}:00" if hour else "")
        )

    @rule(offset=st.none() | st.integers(-3, 2))
    def attended(self, offset: int | None) -> None:
        if offset is None:
            self._mail(self.numbers[0], "MØTT")
        else:
            day = local_today(self.clock.now()) + timedelta(days=offset)
            self._mail(self.numbers[0], f"MØTT {day.day}.{day.month}.{day.year}")

    @rule(offset=st.none() | st.integers(-3, 2))
    def no_show(self, offset: int | None) -> None:
        if offset is None:
            self._mail(self.numbers[0], "IKKE MØTT")
        else:
            day = local_today(self.clock.now()) + timedelta(days=offset)
            self._mail(self.numbers[0], f"IKKE MØTT {day.day}.{day.month}.{day.year}")

    @rule(offset=st.integers(-3, 2), taken=st.booleans())
    def test(self, offset: int, taken: bool) -> None:
        day = local_today(self.clock.now()) + timedelta(days=offset)
        self._mail(
            self.numbers[0], f"PRØVE {'TATT' if taken else 'IKKE TATT'} {day.day}.{day.month}.{day.year}"
        )

    @rule()
    def send_notice(self) -> None:
        self._mail(self.numbers[0], "SEND VARSEL")

    @precondition(lambda self: bool(self.sent))
    @rule(which=st.integers(0, 10_000), header=st.sampled_from([b"Received: from relay\r\n", b""]))
    def replay(self, which: int, header: bytes) -> None:
        data = self.sent[which % len(self.sent)]
        again = header + (data if header else data.replace(b"\r\n", b"\n"))
        assert self._take(again).outcome == "duplicate"

    @rule(
        kind=st.sampled_from(
            ["Auto-Submitted: auto-replied", "Precedence: bulk", "X-Auto-Response-Suppress: All"]
        )
    )
    def automatic(self, kind: str) -> None:
        data = factories.mail(subject=f"Automatisk svar: [{self.numbers[0]}]", body="Borte.")
        assert self._take(kind.encode() + b"\r\n" + data).outcome == "ignored"

    @rule(hours=st.integers(1, 60))
    def advance(self, hours: int) -> None:
        self.clock.advance(timedelta(hours=hours))

    @rule()
    def dispatch(self) -> None:
        outbox.dispatch_due(self.gw)

    @rule(verb=st.sampled_from(["no-show", "attended", "send-notice"]))
    def crash_mid_transaction(self, verb: str) -> None:
        before = self._facts()
        try:
            with self.gw.session() as s:
                case = cases.get_case(s, self.numbers[0])
                with suppress(TransitionError):
                    perform(
                        self.gw, s, case, Command(verb, on=local_today(self.clock.now())), factories.STAFF
                    )
                raise Boom
        except Boom:
            pass
        assert self._facts() == before, "a crashed transaction left something behind"

    @rule()
    def take_snapshot(self) -> None:
        """An online backup, as the ops guide describes (SQLite backup API)."""
        copy = self.dir / "snapshot.db"
        copy.unlink(missing_ok=True)
        with closing(sqlite3.connect(self.db)) as src, closing(sqlite3.connect(copy)) as dst:
            src.backup(dst)
        self.snapshot = (copy, list(self.numbers), list(self.sent), self.expected_replies)

    @precondition(lambda self: self.snapshot is not None)
    @rule()
    def restore(self) -> None:
        assert self.snapshot is not None
        copy, numbers, sent, replies = self.snapshot
        self.gw.close()
        for suffix in ("-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copy(copy, self.db)
        copy.unlink()
        self.snapshot = None
        self.gw = open_gateway(load_settings(self.cfg), clock=self.clock)
        self.numbers, self.sent, self.expected_replies = numbers, sent, replies

    # invariants --------------------------------------------------------------------------------

    def _facts(self) -> list[tuple[object, ...]]:
        with self.gw.session() as s:
            rows = s.scalars(select(Case).order_by(Case.id)).all()
            return [
                (c.status, c.attendances, c.notice_state, len(c.meetings), len(c.tests), len(c.notices))
                for c in rows
            ]

    @invariant()
    def no_false_and_no_hidden_notice(self) -> None:
        now = self.clock.now()
        with self.gw.session() as s:
            for case in s.scalars(select(Case)):
                for notice in case.notices:
                    if notice.status not in ("draft", "queued", "sent"):
                        continue
                    for breach in notice.breach_facts():
                        if breach.type == "ikke_mott":
                            missed = [
                                m
                                for m in case.meetings
                                if m.outcome == "no_show"
                                and m.outcome_on == breach.on
                                and any(x.meeting_id == m.id for x in case.summonses)
                            ]
                            assert missed, f"notice for a no-show on {breach.on} that was not registered"
                            start = missed[0].starts_at or datetime.combine(
                                breach.on + timedelta(days=1), time(0), tzinfo=OSLO
                            )
                            assert start <= now, "notice for a meeting whose time has not come"
                        else:
                            assert any(t.on == breach.on and not t.taken for t in case.tests)
                            assert breach.on <= local_today(now)
                facts = cases.facts_of(case)
                if notices.reportable_breaches(facts) and case.status not in ("withdrawn", "closed"):
                    assert case.notice_state in ("draft", "queued", "sent"), "a due breach is hidden"

    @invariant()
    def nothing_counted_twice(self) -> None:
        with self.gw.session() as s:
            for case in s.scalars(select(Case)):
                attended = [m.outcome_on for m in case.meetings if m.outcome == "attended"]
                assert len(attended) == len(set(attended)) == case.attendances
                tests = [t.on for t in case.tests]
                assert len(tests) == len(set(tests))
                assert sum(1 for m in case.meetings if m.outcome is None) <= 1

    @invariant()
    def no_message_lost_or_doubled(self) -> None:
        with self.gw.session() as s:
            replies = s.scalars(select(OutboxItem).where(OutboxItem.kind == "reply")).all()
            notices_sent = s.scalars(
                select(OutboxItem).where(OutboxItem.kind == "notice", OutboxItem.status == "sent")
            ).all()
        assert len(replies) == self.expected_replies
        assert len({r.key for r in replies}) == len(replies)
        assert len(notices_sent) <= len(self.numbers)
        police = list((self.dir / "spool" / "outbox").glob("*.xml"))
        assert len(police) <= len(self.numbers), "a notice reached the police twice"


CaseLife.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
test_case_life = CaseLife.TestCase
