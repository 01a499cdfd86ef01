"""Case rules that can never produce a false report, or hide a due one (issue #10).

One test per finding, through the real mail path (intake of .eml bytes, as the spool
delivers them) and the real CLI (in-process, on the simulated clock). Dates are
computed from the clock, so the suite means the same on any day it runs.
"""

from __future__ import annotations

import hashlib
import shutil
import sqlite3
from contextlib import closing
from datetime import date, datetime, time, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway import cases
from gateway.app import open_gateway
from gateway.cli import main
from gateway.clock import OSLO, SimulatedClock, local_today
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.intake import pipeline as intake
from gateway.models import Case, Meeting, Notice, OutboxItem, QuarantineEntry
from gateway.ports import RawMessage
from gateway.staff import reminders
from tests import factories
from tests.conftest import build_gateway

STAFF = factories.STAFF


# helpers ---------------------------------------------------------------------------------


def take(gw: Gateway, data: bytes, kind: str = "email") -> intake.IntakeResult:
    msg = RawMessage("spool", "sha256:" + hashlib.sha256(data).hexdigest(), data, kind, gw.clock.now())  # type: ignore[arg-type]
    return intake.process(gw, msg)


def new_case(gw: Gateway, **kw: object) -> str:
    result = take(gw, factories.order_xml(**kw), kind="xml")  # type: ignore[arg-type]
    assert result.case_number, result
    return result.case_number


def command(gw: Gateway, number: str, line: str, *, sender: str = STAFF, **headers: str) -> bytes:
    data = factories.mail(sender=sender, subject=f"Re: [{number}] Ny sak", body=line, when=gw.clock.now())
    for name, value in headers.items():
        data = f"{name.replace('_', '-')}: {value}\r\n".encode() + data
    return data


def send(gw: Gateway, number: str, line: str, **kw: str) -> intake.IntakeResult:
    return take(gw, command(gw, number, line, **kw))


def replies(gw: Gateway) -> list[tuple[str, str]]:
    with gw.session() as s:
        rows = s.scalars(select(OutboxItem).where(OutboxItem.kind == "reply").order_by(OutboxItem.id)).all()
        decoded = [outbox.decode_message(r.payload) for r in rows if r.payload]
    return [(m.subject, m.body) for m in decoded]


def case_of(gw: Gateway, number: str) -> dict[str, object]:
    with gw.session() as s:
        c = cases.get_case(s, number)
        return {
            "status": c.status,
            "attendances": c.attendances,
            "meetings": [(m.starts_on, m.outcome) for m in c.meetings],
            "notices": [n.status for n in c.notices],
            "tests": [(t.on, t.taken) for t in c.tests],
        }


def today(gw: Gateway) -> date:
    return local_today(gw.clock.now())


def nb(day: date) -> str:
    return f"{day.day}.{day.month}.{day.year}"


def at_oslo(gw: Gateway, day: date, hour: int, minute: int = 0) -> None:
    clock = gw.clock
    assert isinstance(clock, SimulatedClock)
    clock.set(datetime.combine(day, time(hour, minute), tzinfo=OSLO))


# 1. A no-show before the meeting ------------------------------------------------------------


def test_no_show_before_the_meeting_is_refused_by_mail_and_drafts_nothing(gw: Gateway) -> None:
    number = new_case(gw)
    meeting = today(gw) + timedelta(days=7)
    send(gw, number, f"INNKALT {nb(meeting)} 10:00 Kontoret")
    assert send(gw, number, "IKKE MØTT").reason == "rejected"
    assert send(gw, number, f"IKKE MØTT {nb(meeting)}").reason == "rejected"
    subject, body = replies(gw)[-1]
    assert subject.startswith(f"[{number}] Feil") and "har ikke begynt ennå" in body
    assert case_of(gw, number)["notices"] == []
    at_oslo(gw, meeting, 9, 59)  # one minute before the start: still refused
    assert send(gw, number, "IKKE MØTT").reason == "rejected"
    at_oslo(gw, meeting, 10, 1)
    assert send(gw, number, "IKKE MØTT").reason == "no-show"
    facts = case_of(gw, number)
    assert facts["notices"] == ["draft"] and facts["meetings"] == [(meeting, "no_show")]


def test_no_show_without_any_booked_meeting_is_refused(gw: Gateway) -> None:
    number = new_case(gw)
    at_oslo(gw, today(gw) + timedelta(days=3), 12)
    assert send(gw, number, "IKKE MØTT").reason == "rejected"
    assert "Ingen samtale er avtalt" in replies(gw)[-1][1]
    assert case_of(gw, number)["notices"] == []


def test_cli_refuses_a_no_show_before_the_meeting_with_exit_1(tmp_path: Path, clock: SimulatedClock) -> None:
    cfg = factories.write_config(tmp_path / "site")
    runner = CliRunner()

    def russak(*args: str) -> tuple[int, str]:
        result = runner.invoke(main, ["--config", str(cfg), *args], obj=clock)
        return result.exit_code, result.stdout + result.stderr

    assert russak("migrate")[0] == 0
    order = tmp_path / "o.xml"
    order.write_bytes(factories.order_xml())
    assert russak("ingest", str(order))[0] == 0
    number = f"RUS-{local_today(clock.now()).year}-0001"
    meeting = local_today(clock.now()) + timedelta(days=7)
    assert russak("record", number, "summoned", "--date", meeting.isoformat(), "--time", "10:00")[0] == 0
    code, out = russak("record", number, "no-show")
    assert code == 1 and "har ikke begynt ennå" in out
    code, out = russak("record", number, "no-show", "--date", meeting.isoformat())
    assert code == 1
    code, out = russak("record", number, "attended", "--date", (meeting + timedelta(days=38)).isoformat())
    assert code == 1 and "har ikke skjedd ennå" in out
    code, out = russak("record", number, "summoned", "--date", (meeting - timedelta(days=30)).isoformat())
    assert code == 1 and "ikke fram i tid" in out
    code, out = russak("record", number, "summoned", "--date", "2099-01-05")
    assert code == 1 and "prøvetiden" in out


def test_dates_outside_the_case_are_refused(gw: Gateway) -> None:
    number = new_case(gw, tests=2)
    with gw.session() as s:
        c = cases.get_case(s, number)
        c.tests_from = today(gw) + timedelta(days=10)
        c.tests_to = today(gw) + timedelta(days=100)
    at_oslo(gw, today(gw) + timedelta(days=5), 12)
    before_window = today(gw) - timedelta(days=1)
    assert send(gw, number, f"PRØVE IKKE TATT {nb(before_window)}").reason == "rejected"
    assert "før testperioden" in replies(gw)[-1][1]
    assert send(gw, number, f"MØTT {nb(today(gw) + timedelta(days=45))}").reason == "rejected"
    assert send(gw, number, "MØTT 1.1.2020").reason == "rejected"  # before the order
    assert case_of(gw, number)["attendances"] == 0 and case_of(gw, number)["notices"] == []


def test_an_attendance_nobody_booked_is_allowed_and_audited_as_such(gw: Gateway) -> None:
    number = new_case(gw)
    at_oslo(gw, today(gw) + timedelta(days=2), 15)
    assert send(gw, number, "MØTT").reason == "attended"
    assert "ingen samtale var avtalt" in replies(gw)[-1][1]
    from gateway.models import AuditEntry

    with gw.session() as s:
        details = s.scalars(select(AuditEntry.detail).where(AuditEntry.action == "attended")).all()
    assert details == ["attendance without a meeting booked for that day"]
    assert case_of(gw, number)["status"] == "fulfilled"


# 2. A replayed command counts twice -----------------------------------------------------------


def test_a_replayed_mail_takes_effect_once(gw: Gateway) -> None:
    number = new_case(gw, attendances=2)
    first = today(gw) + timedelta(days=3)
    booked = command(gw, number, f"INNKALT {nb(first)} 10:00")
    assert take(gw, booked).reason == "summoned"
    # the same INNKALT again, seen with one more Received: header: no new meeting
    assert take(gw, b"Received: from relay.example by mx.example\r\n" + booked).outcome == "duplicate"
    at_oslo(gw, first, 12)
    attended = command(gw, number, "MØTT")
    assert take(gw, attended).reason == "attended"
    assert take(gw, b"Received: from other.example\r\n" + attended).outcome == "duplicate"
    assert take(gw, attended.replace(b"\r\n", b"\n")).outcome == "duplicate"
    facts = case_of(gw, number)
    assert facts["attendances"] == 1 and facts["status"] == "awaiting_summons"
    assert len(facts["meetings"]) == 1  # type: ignore[arg-type]
    # a new mail with the same fact (another Message-ID): "already registered"
    assert send(gw, number, f"MØTT {nb(first)}").reason == "already registered"
    assert replies(gw)[-1][0].endswith("Allerede registrert")
    assert case_of(gw, number)["attendances"] == 1


def test_a_mail_without_message_id_is_keyed_by_its_content(gw: Gateway) -> None:
    number = new_case(gw)
    at_oslo(gw, today(gw) + timedelta(days=1), 12)
    data = command(gw, number, "MØTT")
    data = b"\r\n".join(line for line in data.split(b"\n") if not line.lower().startswith(b"message-id"))
    assert take(gw, data).reason == "attended"
    assert take(gw, b"Received: from x\r\n" + data).outcome == "duplicate"
    assert case_of(gw, number)["attendances"] == 1


def test_send_notice_twice_answers_truthfully(gw: Gateway) -> None:
    number = new_case(gw)
    meeting = today(gw) + timedelta(days=2)
    send(gw, number, f"INNKALT {nb(meeting)} 10:00")
    at_oslo(gw, meeting, 11)
    send(gw, number, "IKKE MØTT")
    confirm = command(gw, number, "SEND VARSEL")
    assert take(gw, confirm).reason == "send-notice"
    assert take(gw, b"Received: from x\r\n" + confirm).outcome == "duplicate"
    assert send(gw, number, "SEND VARSEL").reason == "already registered"
    assert "allerede bekreftet" in replies(gw)[-1][1]
    outbox.dispatch_due(gw)
    assert send(gw, number, "SEND VARSEL").reason == "already registered"
    assert "allerede sendt" in replies(gw)[-1][1]
    with gw.session() as s:
        assert len(s.scalars(select(OutboxItem).where(OutboxItem.kind == "notice")).all()) == 1


# 3. Across units --------------------------------------------------------------------------------


@pytest.fixture
def two_units(tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock) -> Gateway:
    cfg = factories.write_config(tmp_path / "gw", database=sqlite_only_url, second_unit=True)
    gateway = open_gateway(load_settings(cfg), clock=clock, migrate=True)
    yield gateway  # type: ignore[misc]
    gateway.close()


def test_staff_cannot_open_or_withdraw_another_units_case_by_forwarding(two_units: Gateway) -> None:
    gw = two_units
    order = factories.order_xml(kommunenummer=factories.OTHER_KOMMUNE)
    forward = factories.mail(subject="Fwd: ordre", body="Se vedlegg", attachments=[("ordre.xml", order)])
    assert take(gw, forward).outcome == "quarantined"
    with gw.session() as s:
        assert s.scalars(select(Case)).all() == []
    # the police send it themselves: it opens in the other unit
    from_police = factories.mail(
        sender=factories.POLICE_SENDER, subject="Ordre", attachments=[("o.xml", order)]
    )
    number = take(gw, from_police).case_number
    assert number is not None
    import re

    order_id = re.search(rb"<OrdreId>([^<]+)</OrdreId>", order).group(1).decode()  # type: ignore[union-attr]
    withdrawal = factories.order_xml(message_type="tilbakekall", refers_to=order_id)
    forward = factories.mail(subject="Fwd: tilbakekall", attachments=[("t.xml", withdrawal)])
    assert take(gw, forward).outcome == "quarantined"
    assert case_of(gw, number)["status"] == "awaiting_summons"


def test_another_units_case_looks_like_no_case(two_units: Gateway) -> None:
    gw = two_units
    number = new_case(gw, kommunenummer=factories.OTHER_KOMMUNE)
    result = send(gw, number, "STATUS")
    missing = send(gw, number.replace("0001", "0999"), "STATUS")
    assert result.reason == missing.reason == "unknown case"
    (first, _), (second, _) = replies(gw)
    assert first.replace(number, "X") == second.replace(number.replace("0001", "0999"), "X")


# 4. Automatic replies are never commands ----------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"Auto-Submitted": "auto-replied"},
        {"Auto_Submitted": "auto-generated"},
        {"X-Auto-Response-Suppress": "All"},
        {"Precedence": "bulk"},
        {"Precedence": "auto_reply"},
        {"Precedence": "junk"},
    ],
)
def test_automatic_mail_is_consumed_without_a_reply(gw: Gateway, headers: dict[str, str]) -> None:
    number = new_case(gw)
    data = factories.mail(subject=f"Automatisk svar: [{number}] Ny sak", body="Jeg er på ferie.")
    for name, value in headers.items():
        data = f"{name.replace('_', '-')}: {value}\r\n".encode() + data
    result = take(gw, data)
    assert result.outcome == "ignored" and "automatic" in (result.reason or "")
    assert replies(gw) == []


def test_delivery_reports_and_read_receipts_are_not_commands(gw: Gateway) -> None:
    number = new_case(gw)
    report = (
        f"From: {STAFF}\r\nTo: gw@kommune.example\r\nSubject: Lest: [{number}] Ny sak\r\n"
        "Message-ID: <r1@kommune.example>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=disposition-notification; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: text/plain\r\n\r\nLest.\r\n--b--\r\n"
    ).encode()
    assert take(gw, report).outcome == "ignored"
    bounce = report.replace(STAFF.encode(), b"MAILER-DAEMON@kommune.example").replace(b"<r1@", b"<r2@")
    assert take(gw, bounce).outcome == "ignored"
    assert replies(gw) == []
    with gw.session() as s:
        assert s.scalars(select(QuarantineEntry)).all() == []  # no alert loop through quarantine


def test_every_mail_the_gateway_sends_says_it_is_automatic(gw: Gateway) -> None:
    number = new_case(gw)
    send(gw, number, "STATUS")
    outbox.dispatch_due(gw)
    mails = sorted((gw.settings.resolve_path("spool") / "mail").glob("*.eml"))
    assert len(mails) == 2
    texts = [m.read_text(encoding="utf-8") for m in mails]
    assert all("Auto-Submitted: auto-" in t and "X-Auto-Response-Suppress: All" in t for t in texts)
    assert sum("Auto-Submitted: auto-replied" in t for t in texts) == 1  # the STATUS reply


# 6. A restore silently loses mail ------------------------------------------------------------------


def test_after_a_restore_a_reused_case_number_still_gets_its_alert(
    tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock
) -> None:
    gw = build_gateway(tmp_path / "gw", sqlite_only_url, clock)
    db_file = Path(sqlite_only_url.removeprefix("sqlite:///"))
    backup = tmp_path / "backup.db"
    try:
        with closing(sqlite3.connect(db_file)) as src, closing(sqlite3.connect(backup)) as dst:
            src.backup(dst)
        first = new_case(gw, case_reference="11110001")
        outbox.dispatch_due(gw)
    finally:
        gw.close()
    mail_dir = tmp_path / "gw" / "spool" / "mail"
    assert len(list(mail_dir.glob("*.eml"))) == 1
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    shutil.copy(backup, db_file)
    gw = open_gateway(load_settings(tmp_path / "gw" / "russak.toml"), clock=clock)
    try:
        second = new_case(gw, case_reference="22220002")
        assert second == first  # the restored database hands out the number again
        stats = outbox.dispatch_due(gw)
        assert stats.sent == 1
    finally:
        gw.close()
    mails = list(mail_dir.glob("*.eml"))
    assert len(mails) == 2, "the second case's alert was swallowed by the first one's marker"


# 7. A passed deadline is never silent ----------------------------------------------------------------


def test_an_order_already_past_its_deadline_warns_at_intake(gw: Gateway) -> None:
    new_case(gw, attendance_deadline=today(gw) - timedelta(days=5))
    with gw.session() as s:
        subjects = [outbox.decode_message(r.payload).subject for r in s.scalars(select(OutboxItem))]
    assert any("allerede passert" in subject for subject in subjects)


def test_an_overdue_deadline_and_a_meeting_without_outcome_raise_alerts_and_show_in_the_digest(
    gw: Gateway,
) -> None:
    deadline = gw.calendar.add_working_days(today(gw), 5)
    number = new_case(gw, attendance_deadline=deadline)
    meeting = today(gw) + timedelta(days=2)
    send(gw, number, f"INNKALT {nb(meeting)} 10:00")
    at_oslo(gw, deadline + timedelta(days=3), 9)
    reminders.tick(gw)
    with gw.session() as s:
        rows = s.scalars(select(OutboxItem)).all()
        uid = cases.get_case(s, number).uid
        keys = {r.key for r in rows}
        digest = next(outbox.decode_message(r.payload).body for r in rows if r.kind == "digest")
    assert f"case:{uid}:attendance-overdue:{gw.calendar.next_working_day(deadline)}" in keys
    assert any(k.startswith(f"case:{uid}:meeting:{meeting}") and k.endswith(":outcome-missing") for k in keys)
    assert "FORFALT: fristen for oppmøte" in digest and "FORFALT: utfallet av samtalen" in digest


# 8. Times are Oslo time everywhere a person reads them -------------------------------------------------


@pytest.mark.parametrize(
    "meeting",
    [date(2027, 3, 27), date(2027, 3, 29), date(2027, 10, 30), date(2027, 11, 1), date(2027, 7, 1)],
    ids=[
        "before-spring-change",
        "after-spring-change",
        "before-autumn-change",
        "after-autumn-change",
        "summer",
    ],
)
def test_a_meeting_at_ten_is_shown_at_ten(gw: Gateway, meeting: date) -> None:
    number = new_case(gw, condition_end=date(2028, 11, 1))
    at_oslo(gw, meeting - timedelta(days=10), 9)
    assert send(gw, number, f"INNKALT {nb(meeting)} 10:00 Kontoret").reason == "summoned"
    assert "kl. 10:00" in replies(gw)[-1][1]
    send(gw, number, "STATUS")
    assert "kl. 10:00" in replies(gw)[-1][1] and "kl. 09:00" not in replies(gw)[-1][1]
    with gw.session() as s:
        starts = s.scalars(select(Meeting.starts_at)).one()
        assert starts is not None and starts.astimezone(OSLO).hour == 10
    at_oslo(gw, meeting, 7, 5)
    reminders.tick(gw)
    with gw.session() as s:
        today_alert = [
            outbox.decode_message(r.payload).body
            for r in s.scalars(select(OutboxItem).where(OutboxItem.key.like("%:today")))
        ]
    assert len(today_alert) == 1 and "kl. 10:00" in today_alert[0]


def test_notice_drafts_only_from_registered_no_shows(gw: Gateway) -> None:
    number = new_case(gw)
    meeting = today(gw) + timedelta(days=1)
    send(gw, number, f"INNKALT {nb(meeting)}")  # no time given: a no-show from the next day
    at_oslo(gw, meeting, 23, 0)
    assert send(gw, number, "IKKE MØTT").reason == "rejected"
    at_oslo(gw, meeting + timedelta(days=1), 8)
    assert send(gw, number, "IKKE MØTT").reason == "no-show"
    with gw.session() as s:
        breaches = s.scalars(select(Notice)).one().breaches
    assert breaches == [{"type": "ikke_mott", "on": meeting.isoformat()}]


def test_a_letter_from_a_shared_police_sender_goes_to_the_unit_it_names(two_units: Gateway) -> None:
    gw = two_units
    police = factories.POLICE_SENDER
    named = factories.mail(sender=police, subject="Pålegg", body="Til Rådgivende enhet for russaker Nabodal")
    number = take(gw, named).case_number
    assert number is not None
    with gw.session() as s:
        assert cases.get_case(s, number).unit.code == "nabodal"
    unclear = factories.mail(sender=police, subject="Pålegg om oppmøte", body="Se vedlagte brev.")
    result = take(gw, unclear)
    assert result.outcome == "quarantined" and "shared by several units" in (result.reason or "")
