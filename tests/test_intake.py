"""Intake: idempotency, amendments in any order, letters, quarantine, commands."""

from __future__ import annotations

import hashlib
import uuid
from datetime import date

from sqlalchemy import func, select

from gateway.context import Gateway
from gateway.intake import letters
from gateway.intake import pipeline as intake
from gateway.models import Case, InboundMessage, OrderRecord, OutboxItem, QuarantineEntry
from gateway.ports import RawMessage
from tests import factories


def raw(
    gw: Gateway,
    data: bytes,
    kind: str = "xml",
    channel: str = "spool",
    external_id: str | None = None,
) -> RawMessage:
    return RawMessage(
        channel=channel,
        external_id=external_id or "sha256:" + hashlib.sha256(data).hexdigest(),
        content=data,
        kind=kind,  # type: ignore[arg-type]
        received_at=gw.clock.now(),
    )


def count(gw: Gateway, model: type) -> int:
    with gw.session() as s:
        return int(s.scalar(select(func.count()).select_from(model)) or 0)


def test_new_order_opens_case_with_encrypted_person(gw: Gateway) -> None:
    nid = factories.fnr()
    result = intake.process(gw, raw(gw, factories.order_xml(national_id=nid)))
    assert result.outcome == "case"
    assert result.case_number == "RUS-2026-0001"
    with gw.session() as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "awaiting_summons"
        assert case.person is not None and case.person.national_id == nid
        assert case.first_meeting_target == date(2026, 12, 7)  # 10 working days after Mon 23 Nov
        assert case.minor is False


def test_same_message_twice_is_a_recorded_noop(gw: Gateway) -> None:
    data = factories.order_xml()
    first = intake.process(gw, raw(gw, data))
    second = intake.process(gw, raw(gw, data))
    assert (first.outcome, second.outcome) == ("case", "duplicate")
    assert count(gw, Case) == 1
    assert count(gw, InboundMessage) == 1


def test_same_order_id_in_another_message_is_a_recorded_noop(gw: Gateway) -> None:
    order_id = str(uuid.uuid4())
    intake.process(gw, raw(gw, factories.order_xml(order_id=order_id)))
    again = intake.process(gw, raw(gw, factories.order_xml(order_id=order_id, first_name="Annen")))
    assert again.outcome == "duplicate_order"
    assert count(gw, Case) == 1
    assert count(gw, InboundMessage) == 2


def test_endring_before_ny_is_parked_then_applied(gw: Gateway) -> None:
    ny_id = str(uuid.uuid4())
    endring = factories.order_xml(
        message_type="endring",
        refers_to=ny_id,
        attendances=2,
        condition_end=date(2029, 1, 1),
        attendance_deadline=date(2027, 6, 1),
    )
    assert intake.process(gw, raw(gw, endring)).outcome == "parked"
    result = intake.process(gw, raw(gw, factories.order_xml(order_id=ny_id)))
    assert result.outcome == "case"
    with gw.session() as s:
        case = s.scalars(select(Case)).one()
        assert case.required_attendances == 2
        assert case.condition_end == date(2029, 1, 1)
        assert case.attendance_deadline == date(2027, 6, 1)
        assert (
            s.scalar(select(func.count()).select_from(OrderRecord).where(OrderRecord.applied_at.is_(None)))
            == 0
        )


def test_tilbakekall_before_ny_ends_withdrawn_without_notice(gw: Gateway) -> None:
    ny_id = str(uuid.uuid4())
    intake.process(gw, raw(gw, factories.order_xml(message_type="tilbakekall", refers_to=ny_id)))
    intake.process(gw, raw(gw, factories.order_xml(order_id=ny_id)))
    with gw.session() as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "withdrawn"
        assert not case.notices


def test_hostile_xml_is_quarantined_with_alert(gw: Gateway) -> None:
    bomb = b'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaa">]><Oppmoteordre>&a;</Oppmoteordre>'
    result = intake.process(gw, raw(gw, bomb))
    assert result.outcome == "quarantined"
    assert "DTD" in (result.reason or "")
    assert count(gw, QuarantineEntry) == 1
    with gw.session() as s:
        keys = list(s.scalars(select(OutboxItem.key)))
    assert len(keys) == 1 and keys[0].startswith("quarantine:")  # a UUID, not the entry's row id


def test_letter_from_police_needs_registration_with_suggestions(gw: Gateway) -> None:
    nid = factories.fnr(date(2001, 2, 3))
    letter = factories.mail(
        sender=factories.POLICE_SENDER,
        subject="Pålegg om oppmøte",
        body=f"Gjelder {nid[:6]} {nid[6:]}, sak 24817395, prøvetid til 1.12.2028.",
    )
    result = intake.process(gw, raw(gw, letter, kind="email"))
    assert result.outcome == "letter"
    with gw.session() as s:
        case = s.scalars(select(Case)).one()
        assert case.status == "needs_registration"
        suggestions = letters.suggestions_of(case)
    assert suggestions["national_ids"] == [nid]
    assert "24817395" in suggestions["case_references"]
    assert "1.12.2028" in suggestions["dates"]


def test_mail_from_stranger_is_quarantined(gw: Gateway) -> None:
    result = intake.process(
        gw,
        raw(
            gw,
            factories.mail(sender="someone@example.net", subject="hei", body="hei"),
            kind="email",
        ),
    )
    assert result.outcome == "quarantined"


def test_order_by_mail_needs_allowed_sender(gw: Gateway) -> None:
    xml = factories.order_xml()
    stranger = factories.mail(sender="someone@example.net", subject="ordre", attachments=[("o.xml", xml)])
    assert intake.process(gw, raw(gw, stranger, kind="email")).outcome == "quarantined"
    police = factories.mail(sender=factories.POLICE_SENDER, subject="ordre", attachments=[("o.xml", xml)])
    assert intake.process(gw, raw(gw, police, kind="email")).outcome == "case"


# Nothing wedges the loop ----------------------------------------------------------------

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

OUTCOMES = {
    "case",
    "letter",
    "parked",
    "amended",
    "withdrawn",
    "duplicate",
    "duplicate_order",
    "quarantined",
    "command",
    "ignored",
    "multiple",
}


def _mutations() -> st.SearchStrategy[bytes]:
    base = factories.order_xml()
    return st.one_of(
        st.binary(max_size=2000),
        st.builds(
            lambda cut, junk: base[:cut] + junk + base[cut:],
            st.integers(0, len(base)),
            st.binary(max_size=40),
        ),
        st.builds(lambda a, b: base[:a] + base[b:], st.integers(0, len(base)), st.integers(0, len(base))),
        st.text(max_size=500).map(lambda t: t.encode("utf-8", "surrogatepass")),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=_mutations(), kind=st.sampled_from(["xml", "email"]))
def test_no_input_crashes_or_wedges_intake(gw_sqlite: Gateway, data: bytes, kind: str) -> None:
    result = intake.process(gw_sqlite, raw(gw_sqlite, data, kind=kind))
    assert result.outcome in OUTCOMES, result
    if result.outcome == "quarantined":
        assert result.reason


def test_intake_carries_on_after_garbage(gw: Gateway) -> None:
    for junk in (b"\x00\xff" * 100, b"<", b"From: x\n\n\xff\xfe", b""):
        assert intake.process(gw, raw(gw, junk)).outcome == "quarantined"
        assert intake.process(gw, raw(gw, junk + b" ", kind="email")).outcome in OUTCOMES
    assert intake.process(gw, raw(gw, factories.order_xml())).outcome == "case"


def test_order_forwarded_by_staff_is_taken_in(gw: Gateway) -> None:
    forwarded = factories.mail(
        sender=factories.STAFF,
        subject="VS: Pålegg om oppmøte",
        attachments=[("ordre.xml", factories.order_xml())],
    )
    assert intake.process(gw, raw(gw, forwarded, kind="email")).outcome == "case"
