"""The routine end to end through the real services, database, outbox and spool."""

from __future__ import annotations

import contextlib
import email
import email.policy
import hashlib
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from sqlalchemy import select

import schemas
from gateway import cases
from gateway.clock import OSLO, SimulatedClock
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.domain.lifecycle import TransitionError
from gateway.intake import pipeline as intake
from gateway.models import Case, Notice, OutboxItem
from gateway.ports import RawMessage
from gateway.staff.commands import Command, perform
from tests import factories
from tests.conftest import START, build_gateway

STAFF = factories.STAFF


def new_case(gw: Gateway, **kw: object) -> str:
    data = factories.order_xml(**kw)  # type: ignore[arg-type]
    msg = RawMessage("spool", "sha256:" + hashlib.sha256(data).hexdigest(), data, "xml", gw.clock.now())
    result = intake.process(gw, msg)
    assert result.case_number, result
    return result.case_number


REPORTS_A_DAY = ("no-show", "attended", "test-taken", "test-missed")


def after(gw: Gateway, day: date) -> None:
    """Move the simulated clock (forward only) to the morning after ``day``: staff
    report what happened on a day once it has happened."""
    clock = gw.clock
    assert isinstance(clock, SimulatedClock)
    morning = datetime.combine(day + timedelta(days=1), time(8, 0), tzinfo=OSLO)
    if clock.now() < morning:
        clock.set(morning)


def do(gw: Gateway, number: str, verb: str, **kw: object) -> str:
    on = kw.get("on")
    if verb in REPORTS_A_DAY and isinstance(on, date):
        after(gw, on)
    with gw.session() as s:
        return perform(gw, s, cases.get_case(s, number), Command(verb, **kw), STAFF)  # type: ignore[arg-type]


def status(gw: Gateway, number: str) -> str:
    with gw.session() as s:
        return cases.get_case(s, number).status


def spool(gw: Gateway) -> Path:
    return gw.settings.resolve_path("spool")


def notice_files(gw: Gateway) -> list[Path]:
    return sorted((spool(gw) / "outbox").glob("*.xml"))


def test_no_show_confirm_and_deliver_notice(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 12, 3))
    do(gw, number, "no-show", on=date(2026, 12, 3))
    assert status(gw, number) == "noncompliant"
    outbox.dispatch_due(gw)
    assert notice_files(gw) == []  # waits for confirmation by default
    do(gw, number, "send-notice")
    stats = outbox.dispatch_due(gw)
    assert stats.dead == 0
    files = notice_files(gw)
    assert len(files) == 1
    doc = etree.parse(str(files[0]), etree.XMLParser(resolve_entities=False, no_network=True))
    etree.XMLSchema(etree.parse(str(schemas.NOTICE_XSD))).assertValid(doc)
    ns = {"m": schemas.NOTICE_NS}
    assert doc.findtext("m:Saksnummer", namespaces=ns) == "24817395"
    assert doc.find("m:Brudd", namespaces=ns).get("type") == "ikke_mott"
    text = files[0].with_suffix(".txt").read_text(encoding="utf-8")
    assert "24817395" in text and "Møtte ikke" in text
    assert status(gw, number) == "notified"
    # a second dispatch sends nothing more
    assert outbox.dispatch_due(gw).sent == 0
    assert len(notice_files(gw)) == 1


def test_attended_case_never_notifies_even_with_a_stale_queued_notice(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 12, 3))
    do(gw, number, "no-show", on=date(2026, 12, 3))
    do(gw, number, "send-notice")
    # before the dispatcher runs, staff register that the person did attend after all
    do(gw, number, "attended", on=date(2026, 12, 4))
    assert status(gw, number) == "fulfilled"
    outbox.dispatch_due(gw)
    assert notice_files(gw) == []
    with gw.session() as s:
        assert {n.status for n in s.scalars(select(Notice))} == {"cancelled"}


def test_dispatcher_rechecks_the_gate_at_send_time(gw: Gateway) -> None:
    """Even if a row slipped past the state machine, the claim-time check stops it."""
    number = new_case(gw)
    do(gw, number, "summoned", on=date(2026, 12, 3))
    do(gw, number, "no-show", on=date(2026, 12, 3))
    do(gw, number, "send-notice")
    with gw.session() as s:  # simulate a bug: attendance recorded behind the services' back
        case = cases.get_case(s, number)
        case.attendances = 1
    outbox.dispatch_due(gw)
    assert notice_files(gw) == []


def test_test_missed_drafts_a_test_notice(gw: Gateway) -> None:
    number = new_case(gw, tests=2)
    do(gw, number, "summoned", on=date(2026, 12, 3))
    do(gw, number, "attended", on=date(2026, 12, 3))
    do(gw, number, "test-missed", on=date(2026, 12, 10))
    assert status(gw, number) == "noncompliant"
    do(gw, number, "send-notice")
    outbox.dispatch_due(gw)
    [file] = notice_files(gw)
    assert b'type="prove_ikke_tatt"' in file.read_bytes()
    assert b'type="ikke_mott"' not in file.read_bytes()


def test_auto_policy_sends_after_working_days(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock
) -> None:
    gw = build_gateway(tmp_path / "auto", sqlite_only_url, clock, notice_policy="auto", auto_days=2)
    try:
        number = new_case(gw)
        do(gw, number, "summoned", on=date(2026, 11, 24))
        do(gw, number, "no-show", on=date(2026, 11, 24))
        from gateway.staff import reminders

        reminders.tick(gw)
        outbox.dispatch_due(gw)
        assert notice_files(gw) == []
        clock.advance(timedelta(days=2))  # Wednesday: 2 working days after Monday
        assert reminders.tick(gw).auto_notices == [number]
        outbox.dispatch_due(gw)
        assert len(notice_files(gw)) == 1
    finally:
        gw.close()


def test_close_and_ended_cases_refuse_events(gw: Gateway) -> None:
    number = new_case(gw)
    do(gw, number, "close", reason="flyttet")
    assert status(gw, number) == "closed"
    with pytest.raises(TransitionError):
        do(gw, number, "summoned", on=date(2026, 12, 3))


def test_staff_mail_has_no_identity_number_and_tagged_subject(gw: Gateway) -> None:
    nid = factories.fnr(date(2009, 6, 1))
    number = new_case(gw, national_id=nid, birth=date(2009, 6, 1), guardians=2, reaction="ungdomsoppfolging")
    with gw.session() as s:
        assert cases.get_case(s, number).minor is True
    outbox.dispatch_due(gw)
    mails = list((spool(gw) / "mail").glob("*.eml"))
    assert mails
    for path in mails:
        raw = path.read_bytes()
        assert nid.encode() not in raw
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        assert f"[{number}]" in str(msg["Subject"])
        assert "under 18" in msg.get_content()


def test_status_command_by_mail_replies_with_sheet_without_identity_number(gw: Gateway) -> None:
    nid = factories.fnr()
    number = new_case(gw, national_id=nid)
    data = factories.mail(subject=f"Re: [{number}] Ny sak", body="STATUS\n\n> sitert tekst")
    result = intake.process(gw, RawMessage("spool", "m1", data, "email", gw.clock.now()))
    assert result.outcome == "command"
    with gw.session() as s:
        reply = s.scalars(select(OutboxItem).where(OutboxItem.kind == "reply")).one()
        body = outbox.decode_message(reply.payload or b"").body
    assert "Ola Testesen" in body and nid not in body


def test_command_by_mail_summons_and_confirms(gw: Gateway) -> None:
    number = new_case(gw)
    data = factories.mail(subject=f"[{number}]", body="INNKALT 3.12 kl 10:00 Kontoret i sentrum")
    assert intake.process(gw, RawMessage("spool", "m1", data, "email", gw.clock.now())).outcome == "command"
    with gw.session() as s:
        case = cases.get_case(s, number)
        assert case.status == "summoned"
        meeting = case.meetings[-1]
        assert meeting.starts_on == date(2026, 12, 3)
        assert meeting.place == "Kontoret i sentrum"
        assert meeting.starts_at is not None and meeting.starts_at.hour == 9  # 10:00 Oslo = 09:00 UTC


def test_command_from_unlisted_address_is_ignored_without_reply(gw: Gateway) -> None:
    number = new_case(gw)
    data = factories.mail(sender="intruder@example.net", subject=f"[{number}]", body="SEND VARSEL")
    result = intake.process(gw, RawMessage("spool", "m1", data, "email", gw.clock.now()))
    assert result.outcome == "ignored"
    with gw.session() as s:
        assert s.scalars(select(OutboxItem).where(OutboxItem.kind == "reply")).all() == []


def test_bad_command_gets_error_and_help(gw: Gateway) -> None:
    number = new_case(gw)
    data = factories.mail(subject=f"[{number}]", body="INNKALT 32.13")
    intake.process(gw, RawMessage("spool", "m1", data, "email", gw.clock.now()))
    with gw.session() as s:
        reply = s.scalars(select(OutboxItem).where(OutboxItem.kind == "reply")).one()
        body = outbox.decode_message(reply.payload or b"").body
    assert "ble ikke utført" in body and "INNKALT <dato>" in body


VERBS = st.sampled_from(["summoned", "attended", "no-show", "send-notice", "dispatch", "close"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(VERBS, max_size=12))
def test_random_staff_sequences_never_notify_a_person_who_attended(
    tmp_path_factory: pytest.TempPathFactory, sequence: list[str]
) -> None:
    """Random command sequences through the real database and dispatcher."""
    directory = tmp_path_factory.mktemp("prop")
    gw = build_gateway(directory, f"sqlite:///{directory / 'db.sqlite'}", SimulatedClock(START))
    try:
        number = new_case(gw)
        on = date(2026, 12, 1)
        for verb in sequence:
            on += timedelta(days=1)
            if verb == "dispatch":
                outbox.dispatch_due(gw)
                continue
            with contextlib.suppress(TransitionError):
                do(gw, number, verb, on=on, reason="annet")
        outbox.dispatch_due(gw)
        with gw.session() as s:
            case = s.scalars(select(Case)).one()
            sent = [n for n in case.notices if n.status == "sent"]
            attended_before = {m.outcome_on for m in case.meetings if m.outcome == "attended"}
            for notice in sent:
                assert notice.sent_at is not None
            if case.attendances >= case.required_attendances and not sent:
                assert not notice_files(gw)
            # every delivered notice was delivered once, and only attendance breaches before attending
            assert len(notice_files(gw)) == len(sent) <= 1
            if sent and attended_before:
                assert min(attended_before) > max(date.fromisoformat(b["on"]) for b in sent[0].breaches)
    finally:
        gw.close()
