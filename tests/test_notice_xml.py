"""The notice of non-compliance: built, validated against melding-1.xsd, read back."""

from __future__ import annotations

import dataclasses
import re
from datetime import UTC, date, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.delivery.notice_xml import Breach, NoticeDocument, SummonsRecord, build_notice_xml
from gateway.domain.identifiers import synthetic_identity_number
from gateway.messages.orders import load_schema, safe_parser
from schemas import NOTICE_NS, NOTICE_XSD

NATIONAL_ID = synthetic_identity_number(date(1994, 5, 14), 100)
assert NATIONAL_ID is not None
NS = {"m": NOTICE_NS}
OSLO_SUMMER = timezone(timedelta(hours=2))


def make_doc(**changes: object) -> NoticeDocument:
    doc = NoticeDocument(
        message_id="5B7E2F90-1D3A-4C8E-9F42-A6B0C3D1E7F8",
        order_id="3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20",
        case_reference="24817395",
        unit_name="Rådgivende enhet for russaker, Testdal kommune",
        unit_org_number="937000006",
        unit_contact_name="Rådgiver Test Testdotter",
        unit_contact_phone="+47 400 00 010",
        unit_contact_email="russak@example.org",
        national_id=NATIONAL_ID,
        person_name="Ola Testmann",
        breaches=(Breach("ikke_mott", date(2026, 5, 20), "Møtte ikke til samtale 20. mai 2026."),),
        summonses=(SummonsRecord(date(2026, 3, 16), "brev"),),
        sent=datetime(2026, 6, 5, 12, 0, tzinfo=OSLO_SUMMER),
    )
    return dataclasses.replace(doc, **changes)  # type: ignore[arg-type]


def read(xml: bytes) -> etree._Element:
    root = etree.fromstring(xml, safe_parser())
    assert load_schema(NOTICE_XSD).validate(root)
    return root


def texts(root: etree._Element, path: str) -> list[str]:
    return [str(e.text) for e in root.iterfind(path, NS)]


def test_one_breach_round_trips() -> None:
    xml = build_notice_xml(make_doc())
    assert xml.startswith(b"<?xml version='1.0' encoding='UTF-8'?>\n")
    assert b'<MeldingOmManglendeOppfyllelse xmlns="urn:no:russak:melding:1">' in xml
    assert b"\n  <MeldingId>" in xml  # pretty printed
    root = read(xml)
    assert root.tag == f"{{{NOTICE_NS}}}MeldingOmManglendeOppfyllelse"
    assert texts(root, "m:MeldingId") == ["5b7e2f90-1d3a-4c8e-9f42-a6b0c3d1e7f8"]
    assert texts(root, "m:GjelderOrdreId") == ["3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20"]
    assert texts(root, "m:Saksnummer") == ["24817395"]
    assert texts(root, "m:Avsender/m:Navn") == ["Rådgivende enhet for russaker, Testdal kommune"]
    assert texts(root, "m:Avsender/m:Organisasjonsnummer") == ["937000006"]
    assert texts(root, "m:Avsender/m:Kontakt/m:Epost") == ["russak@example.org"]
    assert texts(root, "m:Person/m:Fodselsnummer") == [NATIONAL_ID]
    assert texts(root, "m:Person/m:Navn") == ["Ola Testmann"]
    breaches = root.findall("m:Brudd", NS)
    assert [b.get("type") for b in breaches] == ["ikke_mott"]
    assert texts(root, "m:Brudd/m:Dato") == ["2026-05-20"]
    assert texts(root, "m:Brudd/m:Beskrivelse") == ["Møtte ikke til samtale 20. mai 2026."]
    assert texts(root, "m:Innkallinger/m:Innkalling/m:Kanal") == ["brev"]
    assert texts(root, "m:Sendt") == ["2026-06-05T12:00:00+02:00"]
    assert root[-1].tag == f"{{{NOTICE_NS}}}Sendt"


def test_two_breaches_keep_their_order_and_types() -> None:
    breaches = (
        Breach("ikke_mott", date(2026, 5, 20), "Møtte ikke."),
        Breach("prove_ikke_tatt", date(2026, 6, 1), "Tok ikke rusmiddelprøve hos legen."),
    )
    root = read(build_notice_xml(make_doc(breaches=breaches)))
    assert [b.get("type") for b in root.findall("m:Brudd", NS)] == ["ikke_mott", "prove_ikke_tatt"]
    assert texts(root, "m:Brudd/m:Dato") == ["2026-05-20", "2026-06-01"]


def test_optional_parts_are_left_out() -> None:
    doc = make_doc(
        order_id=None,
        unit_contact_name=None,
        unit_contact_phone=None,
        unit_contact_email=None,
        summonses=(),
        sent=datetime(2026, 6, 5, 10, 0, 0, 123456, tzinfo=UTC),
    )
    root = read(build_notice_xml(doc))
    assert root.find("m:GjelderOrdreId", NS) is None
    assert root.find("m:Avsender/m:Kontakt", NS) is None
    assert root.find("m:Innkallinger", NS) is None
    assert texts(root, "m:Sendt") == ["2026-06-05T10:00:00+00:00"]


def test_partial_contact_keeps_only_what_is_known() -> None:
    root = read(build_notice_xml(make_doc(unit_contact_name=None, unit_contact_email=None)))
    kontakt = root.find("m:Avsender/m:Kontakt", NS)
    assert kontakt is not None
    assert [etree.QName(c).localname for c in kontakt] == ["Telefon"]


def test_offset_with_seconds_becomes_utc() -> None:
    odd = timezone(timedelta(hours=1, seconds=30))
    root = read(build_notice_xml(make_doc(sent=datetime(2026, 6, 5, 12, 0, 30, tzinfo=odd))))
    assert texts(root, "m:Sendt") == ["2026-06-05T11:00:00+00:00"]


def test_refuses_empty_breaches() -> None:
    with pytest.raises(ValueError, match="at least one breach"):
        build_notice_xml(make_doc(breaches=()))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"sent": datetime(2026, 6, 5, 12, 0)}, "aware"),
        ({"national_id": NATIONAL_ID[:10] + str((int(NATIONAL_ID[10]) + 1) % 10)}, "national_id"),
        ({"unit_org_number": "937000001"}, "unit_org_number"),
        ({"breaches": (Breach("annet", date(2026, 1, 1), "x"),)}, "breach type"),  # type: ignore[arg-type]
        ({"message_id": "ikke-en-uuid"}, "melding-1.xsd"),
        ({"case_reference": ""}, "melding-1.xsd"),
        ({"person_name": "x" * 401}, "melding-1.xsd"),
        ({"unit_contact_email": "ikke en adresse"}, "melding-1.xsd"),
        ({"breaches": (Breach("ikke_mott", date(2026, 1, 1), ""),)}, "melding-1.xsd"),
    ],
)  # fmt: skip
def test_invalid_documents_are_bugs_and_say_so(changes: dict[str, object], reason: str) -> None:
    with pytest.raises(ValueError, match=reason) as info:
        build_notice_xml(make_doc(**changes))
    assert re.search(r"\d{11}", str(info.value)) is None
    assert "Ola" not in str(info.value)


def test_repr_does_not_show_the_person() -> None:
    shown = repr(make_doc())
    assert NATIONAL_ID not in shown
    assert "Testmann" not in shown


@settings(max_examples=100, deadline=None)
@given(
    description=st.text(
        alphabet=st.characters(exclude_categories=("Cs", "Cc", "Cn"), include_characters="\n"),
        min_size=1,
        max_size=300,
    ).filter(lambda s: s.strip() != ""),
    count=st.integers(1, 5),
)
def test_any_reasonable_description_builds_and_reads_back(description: str, count: int) -> None:
    breaches = tuple(
        Breach("prove_ikke_tatt", date(2026, 5, 1) + timedelta(days=i), description) for i in range(count)
    )
    root = read(build_notice_xml(make_doc(breaches=breaches)))
    assert texts(root, "m:Brudd/m:Beskrivelse") == [description] * count
