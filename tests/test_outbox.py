"""The outbox: retries, Retry-After, dead letters, leases, and the notice retry path.

The channel under test is the real spool channel; ``Flaky`` in front of it raises the
two documented connector errors on demand, as a vendor outage would.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from sqlalchemy import select

from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.delivery.retry import backoff
from gateway.models import Notice, OutboxItem
from gateway.ports import OutboundMessage, PermanentError, Receipt, TransientError
from gateway.staff import mailer as staff
from gateway.staff.alerts import dead_letter_key
from tests.test_routine import do, new_case, notice_files


@dataclass
class Flaky:
    inner: object
    errors: list[Exception] = field(default_factory=list)
    calls: int = 0

    @property
    def name(self) -> str:
        return "spool"

    def send(self, message: OutboundMessage) -> Receipt:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.inner.send(message)  # type: ignore[attr-defined]


def flaky(gw: Gateway, *errors: Exception) -> Flaky:
    wrapper = Flaky(gw.channel("spool"), list(errors))
    gw._channels["spool"] = wrapper
    return wrapper


def one_alert(gw: Gateway) -> int:
    with gw.session() as s:
        assert staff.send(gw, s, key="test:1", subject="Test", body="Hei", unit_code="testdal")
        return s.scalars(select(OutboxItem.id).where(OutboxItem.key == "test:1")).one()


def item(gw: Gateway, item_id: int) -> OutboxItem:
    with gw.session() as s:
        return s.get_one(OutboxItem, item_id)


def test_backoff_is_exponential_jittered_capped_and_honours_retry_after() -> None:
    rng = random.Random(7)
    delays = [backoff(n, base=30, cap=3600, rng=rng) for n in range(1, 12)]
    for n, d in enumerate(delays, start=1):
        step = min(3600, 30 * 2 ** (n - 1))
        assert step / 2 <= d <= step
    assert max(delays) <= 3600
    assert backoff(1, base=30, cap=3600, retry_after=900, rng=rng) == 900


def test_transient_failure_is_retried_after_the_servers_hint(gw: Gateway) -> None:
    item_id = one_alert(gw)
    channel = flaky(gw, TransientError("429 throttled", retry_after=120))
    stats = outbox.dispatch_due(gw)
    assert (stats.sent, stats.retried) == (0, 1)
    row = item(gw, item_id)
    assert row.status == "pending" and row.attempts == 1
    assert row.next_attempt_at - gw.clock.now() >= timedelta(seconds=120)
    assert outbox.dispatch_due(gw).total == 0  # not due yet: no busy retry
    gw.clock.advance(timedelta(seconds=121))  # type: ignore[attr-defined]
    assert outbox.dispatch_due(gw).sent == 1
    assert channel.calls == 2
    assert item(gw, item_id).status == "sent"


def test_permanent_failure_is_a_dead_letter_with_a_staff_alert(gw: Gateway) -> None:
    item_id = one_alert(gw)
    flaky(gw, PermanentError("mailbox does not exist"))
    stats = outbox.dispatch_due(gw)
    assert stats.dead == 1
    assert item(gw, item_id).status == "dead"
    with gw.session() as s:
        dead_key = dead_letter_key(s.get_one(OutboxItem, item_id).key)
        alert = s.scalars(select(OutboxItem).where(OutboxItem.key == dead_key)).one()
    assert alert.status == "sent"  # the second dispatch in the loop delivered it
    # a failing alert about a failure does not alert again (no loops)
    flaky(gw, PermanentError("still broken"))
    with gw.session() as s:
        staff.send(gw, s, key=f"dead:{item_id + 100}", subject="x", body="y", unit_code="testdal")
    outbox.dispatch_due(gw)
    with gw.session() as s:
        again = dead_letter_key(f"dead:{item_id + 100}")
        assert s.scalars(select(OutboxItem).where(OutboxItem.key == again)).all() == []


def test_retries_give_up_after_the_configured_time(gw: Gateway) -> None:
    item_id = one_alert(gw)
    flaky(gw, *[TransientError("down") for _ in range(100)])
    for _ in range(100):
        outbox.dispatch_due(gw)
        gw.clock.advance(timedelta(hours=2))  # type: ignore[attr-defined]
        if item(gw, item_id).status == "dead":
            break
    row = item(gw, item_id)
    assert row.status == "dead"
    assert "gave up" in (row.last_error or "")
    assert row.attempts < 100


def test_an_expired_lease_is_claimed_again(gw: Gateway) -> None:
    item_id = one_alert(gw)
    now = gw.clock.now()
    with gw.session() as s:  # a dispatcher that died mid-send left this behind
        row = s.get_one(OutboxItem, item_id)
        row.lease_owner, row.lease_until, row.attempts = "dead-host:1:x", now + timedelta(seconds=5), 1
    assert outbox.dispatch_due(gw).total == 0  # lease still held
    gw.clock.advance(timedelta(seconds=6))  # type: ignore[attr-defined]
    assert outbox.dispatch_due(gw).sent == 1
    assert item(gw, item_id).attempts == 2


def test_a_dead_notice_returns_to_draft_and_keeps_its_melding_id(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 12, 3))
    do(gw, number, "no-show", on=date(2026, 12, 3))
    outbox.dispatch_due(gw)  # the staff alerts so far
    do(gw, number, "send-notice")
    flaky(gw, PermanentError("recipient rejected"))
    outbox.dispatch_due(gw)
    with gw.session() as s:
        notice = s.scalars(select(Notice)).one()
        assert notice.status == "draft"
        message_id = notice.message_id
    gw._channels.pop("spool")
    do(gw, number, "send-notice")
    outbox.dispatch_due(gw)
    with gw.session() as s:
        keys = sorted(s.scalars(select(OutboxItem.key).where(OutboxItem.kind == "notice")))
        assert s.scalars(select(Notice)).one().status == "sent"
    assert keys == [f"notice:{message_id}", f"notice:{message_id}:retry1"]
    [file] = notice_files(gw)
    assert message_id.encode() in file.read_bytes()
