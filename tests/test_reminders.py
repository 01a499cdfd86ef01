"""Reminders are computed from the database and fire once each, in working days."""

from __future__ import annotations

from datetime import UTC, date, datetime

from sqlalchemy import select

from gateway import cases
from gateway.context import Gateway
from gateway.models import OutboxItem
from gateway.staff import reminders
from tests.test_routine import do, new_case


def keys(gw: Gateway) -> set[str]:
    with gw.session() as s:
        return set(s.scalars(select(OutboxItem.key)))


def uid(gw: Gateway, number: str) -> str:
    """Reminder keys use the case's UUID (stable across a restore), not its row id."""
    with gw.session() as s:
        return cases.get_case(s, number).uid


def jump(gw: Gateway, when: datetime) -> None:
    gw.clock.set(when)  # type: ignore[attr-defined]


def test_summons_overdue_fires_once_after_the_working_day_target(gw: Gateway) -> None:
    number = new_case(gw)  # Monday 23 Nov; target 10 working days later: Mon 7 Dec
    reminders.tick(gw)
    assert not any(":summons-overdue:" in k for k in keys(gw))
    jump(gw, datetime(2026, 12, 7, 8, 0, tzinfo=UTC))
    reminders.tick(gw)
    assert not any(":summons-overdue:" in k for k in keys(gw))
    jump(gw, datetime(2026, 12, 8, 8, 0, tzinfo=UTC))
    first = reminders.tick(gw).reminders
    again = reminders.tick(gw).reminders
    overdue = [k for k in keys(gw) if ":summons-overdue:" in k]
    assert overdue == [f"case:{uid(gw, number)}:summons-overdue:2026-12-07"]
    assert first >= 1 and again == 0
    # a summons registered: no more overdue reminders even far later
    do(gw, number, "summoned", on=date(2026, 12, 14))
    jump(gw, datetime(2026, 12, 20, 8, 0, tzinfo=UTC))
    reminders.tick(gw)
    assert [k for k in keys(gw) if ":summons-overdue:" in k] == overdue


def test_meeting_reminders_next_working_day_today_and_missing_outcome(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 12, 14))  # Monday
    meeting = f"case:{uid(gw, number)}:meeting:2026-12-14"
    jump(gw, datetime(2026, 12, 11, 7, 0, tzinfo=UTC))  # Friday 08:00 Oslo: next working day is Monday
    reminders.tick(gw)
    assert f"{meeting}:next-day" in keys(gw)
    jump(gw, datetime(2026, 12, 14, 5, 0, tzinfo=UTC))  # Monday 06:00 Oslo: too early
    reminders.tick(gw)
    assert f"{meeting}:today" not in keys(gw)
    jump(gw, datetime(2026, 12, 14, 7, 0, tzinfo=UTC))
    reminders.tick(gw)
    assert f"{meeting}:today" in keys(gw)
    jump(gw, datetime(2026, 12, 15, 7, 0, tzinfo=UTC))
    reminders.tick(gw)
    assert f"{meeting}:outcome-missing" in keys(gw)


def test_deadline_and_condition_period_warnings_rearm_when_the_date_moves(gw: Gateway) -> None:
    number = new_case(gw, attendance_deadline=date(2027, 3, 1), condition_end=date(2027, 3, 10))
    case = f"case:{uid(gw, number)}"
    jump(gw, datetime(2027, 2, 16, 8, 0, tzinfo=UTC))  # 13 days before the deadline
    reminders.tick(gw)
    assert f"{case}:attendance-deadline:2027-03-01" in keys(gw)
    assert f"{case}:condition-end:2027-03-10" not in keys(gw)
    jump(gw, datetime(2027, 2, 25, 8, 0, tzinfo=UTC))
    reminders.tick(gw)
    assert f"{case}:condition-end:2027-03-10" in keys(gw)


def test_legal_deadline_on_a_holiday_moves_to_the_next_working_day(gw: Gateway) -> None:
    number = new_case(gw, attendance_deadline=date(2027, 5, 17))  # Constitution Day (a Monday)
    from gateway import cases

    with gw.session() as s:
        assert cases.get_case(s, number).attendance_deadline == date(2027, 5, 18)


def test_clock_jumping_back_and_forth_never_doubles_a_reminder(gw: Gateway) -> None:
    new_case(gw)
    for when in [
        datetime(2026, 12, 9, 8, tzinfo=UTC),
        datetime(2026, 12, 1, 8, tzinfo=UTC),
        datetime(2026, 12, 9, 8, tzinfo=UTC),
        datetime(2026, 12, 10, 8, tzinfo=UTC),
    ]:
        jump(gw, when)
        reminders.tick(gw)
    with gw.session() as s:
        all_keys = list(s.scalars(select(OutboxItem.key)))
    assert len(all_keys) == len(set(all_keys))


def test_notice_awaiting_confirmation_reminds_after_a_working_day(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 11, 24))
    do(gw, number, "no-show", on=date(2026, 11, 24))  # registered the morning after, 25 Nov
    reminders.tick(gw)
    assert not any(k.endswith(":awaiting-confirmation") for k in keys(gw))
    jump(gw, datetime(2026, 11, 26, 8, tzinfo=UTC))  # one working day later
    reminders.tick(gw)
    with gw.session() as s:
        message_id = cases.get_case(s, number).notices[0].message_id
    assert f"notice:{message_id}:awaiting-confirmation" in keys(gw)


def test_digest_once_per_working_day_after_digest_time(gw: Gateway) -> None:
    new_case(gw)
    jump(gw, datetime(2026, 11, 24, 6, 0, tzinfo=UTC))  # 07:00 Oslo, before 07:30
    reminders.tick(gw)
    assert "digest:testdal:2026-11-24" not in keys(gw)
    jump(gw, datetime(2026, 11, 24, 6, 45, tzinfo=UTC))
    assert reminders.tick(gw).digests == 1
    assert reminders.tick(gw).digests == 0
    jump(gw, datetime(2026, 11, 28, 9, 0, tzinfo=UTC))  # Saturday: no digest
    reminders.tick(gw)
    assert "digest:testdal:2026-11-28" not in keys(gw)
