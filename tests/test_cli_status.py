"""``russak status`` (#8): healthy (0) or degraded (1) from the facts in the database,
gathered by ``gateway.ops.status.gather`` (which the daemon and a health check can use too)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import datetime, time, timedelta
from pathlib import Path

import pytest

from gateway.clock import OSLO, SimulatedClock
from gateway.context import Gateway
from tests import factories
from tests.test_cli import Russak


@pytest.fixture
def site(cfg: Path, clock: SimulatedClock) -> Iterator[Gateway]:
    from gateway.app import open_gateway
    from gateway.config import load_settings

    gw = open_gateway(load_settings(cfg), clock=clock)
    yield gw
    gw.close()


def _daemon_runs(gw: Gateway) -> None:
    """The instance lease a running daemon holds (this live process stands in for it)."""
    from gateway.context import host_name
    from gateway.models import Lease

    with gw.session() as session:
        until = gw.clock.now() + timedelta(minutes=5)
        session.merge(Lease(name="instance", owner=f"{host_name()}:{os.getpid()}:daemon", until=until))


def _status(russak: Russak, cfg: Path) -> tuple[int, dict[str, object]]:
    result = russak(cfg, "status", "--json")
    return result.returncode, json.loads(result.stdout)


def test_healthy_with_a_daemon_and_nothing_waiting(cfg: Path, russak: Russak, site: Gateway) -> None:
    _daemon_runs(site)
    code, facts = _status(russak, cfg)
    assert code == 0, facts
    assert facts["healthy"] is True and facts["problems"] == []
    assert facts["schema"] == {"revision": "0003", "head": "0003", "current": True}
    assert facts["outbox"] == {
        "pending": 0,
        "oldest_pending_at": None,
        "oldest_pending_age_seconds": None,
        "dead": 0,
    }
    text = russak(cfg, "status")
    assert text.returncode == 0 and text.stderr == ""
    assert text.stdout.splitlines()[0].startswith("daemon: running (")
    assert text.stdout.splitlines()[-1] == "healthy; outbox 0 pending, 0 dead; quarantine 0"


def test_no_daemon_is_degraded(cfg: Path, russak: Russak) -> None:
    code, facts = _status(russak, cfg)
    assert code == 1 and facts["problems"] == ["no daemon running"]
    assert facts["daemon"] == {"running": False, "owner": None, "lease_until": None}
    text = russak(cfg, "status")
    assert text.stderr == "russak: degraded: no daemon running\n"


def test_dead_letters_quarantine_and_an_old_backlog_are_degraded(
    cfg: Path, tmp_path: Path, russak: Russak, site: Gateway, clock: SimulatedClock
) -> None:
    from gateway.models import OutboxItem
    from gateway.staff import mailer

    with site.session() as s:
        mailer.send(site, s, key="t:1", subject="x", body="y", unit_code="enhet")
        mailer.send(site, s, key="t:2", subject="x", body="y", unit_code="enhet")
    with site.session() as s:
        s.get_one(OutboxItem, 2).status = "dead"
    _daemon_runs(site)
    code, facts = _status(russak, cfg)
    assert code == 1 and facts["problems"] == ["1 dead letter(s)"]
    assert facts["outbox"]["pending"] == 1 and facts["outbox"]["dead"] == 1  # type: ignore[index]
    order = tmp_path / "bad.xml"
    order.write_bytes(b"<x/>")
    assert russak(cfg, "ingest", str(order)).returncode == 1
    clock.advance(timedelta(hours=1, minutes=1))
    _daemon_runs(site)
    code, facts = _status(russak, cfg)
    assert code == 1
    assert facts["problems"] == [
        "1 dead letter(s)",
        "1 message(s) in quarantine",
        "outbox backlog older than 1 hour",
    ]
    assert facts["outbox"]["oldest_pending_age_seconds"] >= 3660  # type: ignore[index,operator]
    assert facts["outbox"]["oldest_pending_at"] == "2026-11-23T09:00:00+01:00"  # type: ignore[index]
    text = russak(cfg, "status").stdout
    assert "outbox: 2 pending (oldest 1 h 1 min old), 1 dead" in text


def test_the_last_poll_comes_from_the_poll_lease(cfg: Path, russak: Russak, clock: SimulatedClock) -> None:
    _, before = _status(russak, cfg)
    (channel,) = before["channels"]  # type: ignore[misc]
    assert channel["last_poll_at"] is None and channel["last_poll_source"] is None
    assert russak(cfg, "run", "--once").returncode == 0
    clock.advance(timedelta(minutes=2))
    _, after = _status(russak, cfg)
    (channel,) = after["channels"]  # type: ignore[misc]
    assert channel["last_poll_at"] == "2026-11-23T09:00:00+01:00"
    assert channel["last_poll_source"] == "poll lease"
    assert channel["last_delivery_at"] == "2026-11-23T09:00:00+01:00"  # the digest and alerts went out
    assert channel["last_error"] is None


def test_the_last_delivery_error_of_a_channel_is_shown(cfg: Path, russak: Russak, site: Gateway) -> None:
    from gateway.models import OutboxItem
    from gateway.staff import mailer

    with site.session() as s:
        mailer.send(site, s, key="t:1", subject="x", body="y", unit_code="enhet")
    with site.session() as s:
        s.get_one(OutboxItem, 1).last_error = "spool: disk full (ENOSPC)"
    _, facts = _status(russak, cfg)
    assert facts["channels"][0]["last_error"] == "spool: disk full (ENOSPC)"  # type: ignore[index]
    assert "last error: spool: disk full (ENOSPC)" in russak(cfg, "status").stdout


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (
            datetime(2026, 11, 23, 6, 0, tzinfo=OSLO),
            datetime(2026, 11, 23, 7, 30, tzinfo=OSLO),
        ),  # Monday morning
        (
            datetime(2026, 11, 27, 12, 0, tzinfo=OSLO),
            datetime(2026, 11, 27, 7, 30, tzinfo=OSLO),
        ),  # due, not made
        (datetime(2026, 11, 28, 12, 0, tzinfo=OSLO), datetime(2026, 11, 30, 7, 30, tzinfo=OSLO)),  # Saturday
        (datetime(2026, 12, 24, 23, 0, tzinfo=OSLO), datetime(2026, 12, 28, 7, 30, tzinfo=OSLO)),  # Christmas
    ],
    ids=["today", "due today", "weekend", "christmas"],
)
def test_the_next_digest_is_on_the_next_working_day_in_oslo(
    site: Gateway, clock: SimulatedClock, now: datetime, expected: datetime
) -> None:
    from gateway.ops.status import next_digest

    clock.set(now)
    if now.date().day == 24:  # that day's digest was made
        from gateway.staff import mailer

        with site.session() as s:
            mailer.send(
                site,
                s,
                key="digest:enhet:2026-12-24",
                subject="x",
                body="y",
                unit_code="enhet",
                kind="digest",
            )
    assert next_digest(site, clock.now()) == expected


def test_after_the_day_s_digest_the_next_is_tomorrow(
    cfg: Path, russak: Russak, clock: SimulatedClock
) -> None:
    assert russak(cfg, "run", "--once").returncode == 0  # Monday 09:00: makes the day's digest
    _, facts = _status(russak, cfg)
    assert facts["next_digest_at"] == "2026-11-24T07:30:00+01:00"
    text = russak(cfg, "status").stdout
    assert "next digest: 2026-11-24 07:30 +01:00\n" in text


def test_gather_is_one_summary_line_for_sd_notify(site: Gateway, clock: SimulatedClock) -> None:
    from gateway.ops.status import gather

    _daemon_runs(site)
    health = gather(site)
    assert health.healthy and health.now == clock.now()
    assert health.summary() == "healthy; outbox 0 pending, 0 dead; quarantine 0"
    assert "\n" not in health.summary()
    clock.set(datetime.combine(clock.now().date(), time(23, 0), tzinfo=OSLO) + timedelta(days=1))
    assert gather(site).summary().startswith("degraded: no daemon running; ")  # the lease ran out


def test_status_refuses_a_broken_config_with_exit_2(cfg: Path, russak: Russak) -> None:
    cfg.write_text(cfg.read_text().replace("retention_days = 90", "retention_days = -1"))
    result = russak(cfg, "status")
    assert result.returncode == 2 and "gateway.retention_days" in result.stderr


def test_status_reads_only(cfg: Path, russak: Russak) -> None:
    inbox = cfg.parent / "spool" / "inbox"
    (inbox / "o.xml").write_bytes(factories.order_xml())
    before = sorted(p.name for p in (cfg.parent / "spool").rglob("*"))
    russak(cfg, "status")
    assert sorted(p.name for p in (cfg.parent / "spool").rglob("*")) == before
    assert json.loads(russak(cfg, "cases", "--json").stdout) == []
