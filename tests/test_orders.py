"""The Oppmoteordre reader: examples, contract rules, and a hostile corpus."""

from __future__ import annotations

import http.server
import json
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import ClassVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from gateway.domain.identifiers import org_number_with_check, synthetic_identity_number
from gateway.messages.orders import (
    Order,
    OrderError,
    XmlLimits,
    load_schema,
    looks_like_order,
    parse_order,
    safe_parser,
    sanitise_xml_message,
)
from schemas import EXAMPLES_DIR, NOTICE_NS, NOTICE_XSD, ORDER_NS, ORDER_XSD

HOSTILE_DIR = Path(__file__).parent / "hostile"
NY_VOKSEN = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()
ENDRING = (EXAMPLES_DIR / "endring.xml").read_bytes()
ADULT_ID = synthetic_identity_number(date(1994, 5, 14), 100)
MINOR_ID = synthetic_identity_number(date(2010, 3, 2), 500)
ELEVEN_DIGITS = re.compile(r"\d{11}")
LONG_DIGITS = re.compile(r"\d{6,}")


def assert_safe(message: str) -> None:
    """An error message fit for logs: one line, no identity-number-like digit run."""
    assert ELEVEN_DIGITS.search(message) is None, message
    assert "\n" not in message
    assert message.strip()


def reject(data: bytes, **kwargs: int) -> str:
    """Parse ``data``, expect OrderError quickly, and return its checked message."""
    started = time.monotonic()
    with pytest.raises(OrderError) as info:
        parse_order(data, **kwargs)
    assert time.monotonic() - started < 5, "hostile input took too long"
    message = str(info.value)
    assert_safe(message)
    return message


def mutate(source: bytes, old: str, new: str) -> bytes:
    assert old.encode() in source, old
    return source.replace(old.encode(), new.encode(), 1)


# ------------------------------------------------------------------- examples


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_examples_are_valid_against_their_schema(path: Path) -> None:
    document = etree.parse(str(path), safe_parser())
    root_ns = etree.QName(document.getroot()).namespace
    schema = load_schema(NOTICE_XSD if root_ns == NOTICE_NS else ORDER_XSD)
    assert schema.validate(document), schema.error_log
    assert root_ns in (ORDER_NS, NOTICE_NS)


@pytest.mark.parametrize("path", sorted(EXAMPLES_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_examples_use_only_synthetic_identity_numbers(path: Path) -> None:
    for number in re.findall(r"<Fodselsnummer>\s*(\d{11})", path.read_text("utf-8")):
        assert 81 <= int(number[2:4]) <= 92, "examples must use synthetic numbers"


def test_ny_voksen_reads_every_field() -> None:
    order = parse_order(NY_VOKSEN)
    assert order.order_id == "3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20"
    assert order.message_type == "ny"
    assert order.refers_to is None
    assert order.sent == datetime(2026, 3, 10, 8, 15, tzinfo=UTC)
    assert order.sent.utcoffset() == timedelta(hours=1)
    assert order.sender.name == "Testdal politidistrikt"
    assert order.sender.org_number == "921000006"
    assert order.sender.contact_name == "Politiadvokat Test Testesen"
    assert order.sender.contact_phone == "+47 400 00 001"
    assert order.sender.contact_email == "patale.testdal@example.org"
    assert (order.sender.reply_type, order.sender.reply_address) == ("altinn", "921000006")
    assert order.recipient_org_number == "937000006"
    assert order.recipient_kommunenummer == "4601"
    assert order.case_reference == "24817395"
    assert order.reaction == "betinget_patalaunnlatelse"
    assert order.decided_on == date(2026, 3, 2)
    assert order.condition_end == date(2028, 3, 2)
    assert order.required_attendances == 1
    assert order.attendance_deadline == date(2026, 6, 1)
    assert order.testing is None
    assert order.remark == "Personen har ønsket samtale på ettermiddagstid."
    person = order.person
    assert person is not None
    assert person.national_id == ADULT_ID
    assert (person.first_name, person.last_name) == ("Ola", "Testmann")
    assert person.birth_date == date(1994, 5, 14)  # derived from the number
    assert person.address is not None
    assert person.address.lines == ("Prøvevegen 12 B",)
    assert (person.address.postal_code, person.address.city) == ("5003", "BERGEN")
    assert person.phone == "+47 400 00 002"
    assert person.email == "ola.testmann@example.org"
    assert person.guardians == ()


def test_ny_mindrearig_reads_guardians_and_testing() -> None:
    order = parse_order((EXAMPLES_DIR / "ny-mindrearig.xml").read_bytes())
    assert order.message_type == "ny"
    assert order.sent == datetime(2026, 4, 20, 13, 5, 30, tzinfo=UTC)
    assert order.recipient_org_number is None
    assert order.recipient_kommunenummer == "4601"
    assert order.reaction == "ungdomsoppfolging"
    assert (order.sender.reply_type, order.sender.reply_address) == (
        "epost",
        "patale.testdal@example.org",
    )
    assert order.required_attendances == 1  # antall left out: the default
    assert order.attendance_deadline == date(2026, 5, 29)
    assert order.testing is not None
    assert order.testing.count == 6
    assert order.testing.from_date == date(2026, 5, 1)
    assert order.testing.to_date == date(2027, 4, 14)
    person = order.person
    assert person is not None
    assert person.national_id == MINOR_ID
    assert person.birth_date == date(2010, 3, 2)
    assert person.address is not None
    assert person.address.lines == ("Eksempelgata 3", "Leilighet H0201")
    assert person.email is None
    assert [(g.first_name, g.last_name) for g in person.guardians] == [
        ("Anne", "Prøvesen"),
        ("Per", "Prøvesen"),
    ]
    anne, per = person.guardians
    assert anne.email == "anne.provesen@example.org"
    assert anne.address is None
    assert per.email is None
    assert per.address is not None
    assert (per.address.lines, per.address.postal_code, per.address.city) == (
        ("Annenvegen 7",),
        "5200",
        "OS",
    )


def test_endring_carries_only_the_changes() -> None:
    order = parse_order(ENDRING)
    assert order.message_type == "endring"
    assert order.refers_to == "3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20"
    assert order.case_reference == "24817395"
    assert order.condition_end == date(2028, 9, 2)
    assert order.reaction is None
    assert order.decided_on is None
    assert order.person is None
    assert order.attendance_deadline == date(2026, 8, 14)
    assert order.testing is not None
    assert order.testing.count == 4
    assert order.recipient_kommunenummer is None


def test_tilbakekall() -> None:
    order = parse_order((EXAMPLES_DIR / "tilbakekall.xml").read_bytes())
    assert order.message_type == "tilbakekall"
    assert order.refers_to == "8d0c6f4a-2b19-4c3e-a5d7-6e1f9b0a2c48"
    assert order.person is None
    assert order.required_attendances is None
    assert order.testing is None
    assert order.remark is not None and order.remark.startswith("Påtaleavgjørelsen")


@pytest.mark.parametrize("name", ["ny-voksen.xml", "ny-mindrearig.xml", "endring.xml", "tilbakekall.xml"])
def test_json_round_trip(name: str) -> None:
    order = parse_order((EXAMPLES_DIR / name).read_bytes())
    text = order.to_json()
    assert json.loads(text)["version"] == 1
    again = Order.from_json(text)
    assert again == order
    assert again.sent.utcoffset() == order.sent.utcoffset()


@pytest.mark.parametrize(
    "text",
    [
        "",
        "[]",
        "{}",
        '{"version": 2}',
        "not json",
        json.dumps({**json.loads(parse_order(NY_VOKSEN).to_json()), "sent": "2026-01-01T10:00"}),
        json.dumps({**json.loads(parse_order(NY_VOKSEN).to_json()), "message_type": "nei"}),
        json.dumps({**json.loads(parse_order(NY_VOKSEN).to_json()), "decided_on": 5}),
        json.dumps({**json.loads(parse_order(NY_VOKSEN).to_json()), "person": []}),
    ],
)
def test_from_json_rejects_malformed_text(text: str) -> None:
    with pytest.raises(OrderError) as info:
        Order.from_json(text)
    assert str(info.value) == "stored order JSON is malformed"


def test_repr_hides_personal_data() -> None:
    order = parse_order(NY_VOKSEN)
    assert order.person is not None
    for shown in (repr(order), repr(order.person), str(order.person), repr(order.person.address)):
        assert ADULT_ID not in shown
        assert "Testmann" not in shown
        assert "Prøvevegen" not in shown
    assert order.order_id in repr(order)


def test_values_are_stripped_and_ids_lowercased() -> None:
    data = mutate(
        NY_VOKSEN,
        "<OrdreId>3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20</OrdreId>",
        "<OrdreId>\n  3F2B8C1E-7A4D-4E2B-9C61-0D5E8A7B1C20\n</OrdreId>",
    )
    data = mutate(data, "<Fornavn>Ola</Fornavn>", "<Fornavn>\n   Ola  </Fornavn>")
    data = mutate(data, f"<Fodselsnummer>{ADULT_ID}", f"<Fodselsnummer>  {ADULT_ID}  ")
    data = mutate(
        data,
        "<Merknad>Personen har ønsket samtale på ettermiddagstid.</Merknad>",
        "<Merknad> </Merknad>",
    )
    data = mutate(data, "<Avgjort>2026-03-02</Avgjort>", "<Avgjort> 2026-03-02\n</Avgjort>")
    order = parse_order(data)
    assert order.order_id == "3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20"
    assert order.person is not None
    assert order.person.first_name == "Ola"
    assert order.person.national_id == ADULT_ID
    assert order.decided_on == date(2026, 3, 2)
    assert order.remark is None  # an empty optional element becomes None


def test_comments_and_processing_instructions_do_not_split_values() -> None:
    data = mutate(NY_VOKSEN, "<Fornavn>Ola</Fornavn>", "<Fornavn>O<!-- x -->la<?pi y?></Fornavn>")
    order = parse_order(data)
    assert order.person is not None
    assert order.person.first_name == "Ola"


def test_explicit_birth_date_wins_over_the_number() -> None:
    data = mutate(
        NY_VOKSEN,
        "<Etternavn>Testmann</Etternavn>",
        "<Etternavn>Testmann</Etternavn><Fodselsdato>1994-05-15</Fodselsdato>",
    )
    order = parse_order(data)
    assert order.person is not None
    assert order.person.birth_date == date(1994, 5, 15)


def test_both_or_either_recipient_identifier_is_accepted() -> None:
    only_org = mutate(NY_VOKSEN, "<Kommunenummer>4601</Kommunenummer>", "")
    assert parse_order(only_org).recipient_kommunenummer is None
    neither = mutate(only_org, "<Organisasjonsnummer>937000006</Organisasjonsnummer>", "")
    assert "schema" in reject(neither)


def test_legitimate_encodings_are_read() -> None:
    text = NY_VOKSEN.decode("utf-8")
    latin = text.replace('encoding="UTF-8"', 'encoding="ISO-8859-1"').encode("latin-1")
    utf16_bom = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16")
    utf16_no_bom = text.replace('encoding="UTF-8"', 'encoding="UTF-16"').encode("utf-16-le")
    utf8_bom = b"\xef\xbb\xbf" + NY_VOKSEN
    for data in (latin, utf16_bom, utf16_no_bom, utf8_bom):
        order = parse_order(data)
        assert order.person is not None
        assert order.person.address is not None
        assert order.person.address.lines == ("Prøvevegen 12 B",)


def test_looks_like_order() -> None:
    assert looks_like_order(NY_VOKSEN)
    assert looks_like_order(NY_VOKSEN.decode().encode("utf-16"))
    assert not looks_like_order((EXAMPLES_DIR / "melding.xml").read_bytes())
    assert not looks_like_order(b"")
    assert not looks_like_order(b"%PDF-1.7\n" + b" " * 5000 + ORDER_NS.encode())


# -------------------------------------------------------------- contract rules


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        (f"<Fodselsnummer>{ADULT_ID}", f"<Fodselsnummer>{ADULT_ID[:10]}9", "Person/Fodselsnummer"),
        (f"<Fodselsnummer>{ADULT_ID}", f"<Fodselsnummer>{ADULT_ID}0", "schema"),
        (
            "<Organisasjonsnummer>921000006</Organisasjonsnummer>",
            "<Organisasjonsnummer>921000007</Organisasjonsnummer>",
            "Avsender/Organisasjonsnummer fails the check digit",
        ),
        (
            "<Organisasjonsnummer>937000006</Organisasjonsnummer>",
            "<Organisasjonsnummer>937000001</Organisasjonsnummer>",
            "Mottaker/Organisasjonsnummer fails the check digit",
        ),
        (
            '<Svarkanal type="altinn">921000006</Svarkanal>',
            '<Svarkanal type="altinn">921000007</Svarkanal>',
            "Svarkanal of type altinn",
        ),
        (
            '<Svarkanal type="altinn">921000006</Svarkanal>',
            '<Svarkanal type="epost">ikke en adresse</Svarkanal>',
            "Svarkanal of type epost",
        ),
        (
            '<Svarkanal type="altinn">921000006</Svarkanal>',
            '<Svarkanal type="fax">921000006</Svarkanal>',
            "schema",
        ),
        ("+01:00</Sendt>", "</Sendt>", "schema: line 6: Element Sendt"),
        ("T09:15:00+01:00</Sendt>", "T24:00:00+01:00</Sendt>", "Sendt is not a valid"),
        ("<Avgjort>2026-03-02", "<Avgjort>2028-03-03", "ProvetidTil is before"),
        ("<Avgjort>2026-03-02", "<Avgjort>2026-02-30", "schema"),
        ("<Avgjort>2026-03-02", "<Avgjort>2026-03-02Z", "schema"),
        ("<Meldingstype>ny", "<Meldingstype>annet", "schema"),
        ("<Reaksjon>betinget_patalaunnlatelse", "<Reaksjon>bot", "schema"),
        ('antall="1"', 'antall="0"', "schema"),
        ('antall="1"', 'antall="21"', "schema"),
        ("<Straffesak>", "<Straffesak><Ukjent/>", "schema"),
        ("<Reaksjon>betinget_patalaunnlatelse</Reaksjon>", "", "Straffesak/Reaksjon is required"),
        ("<ProvetidTil>2028-03-02</ProvetidTil>", "", "Straffesak/ProvetidTil is required"),
        ('<Oppmote antall="1" frist="2026-06-01"/>', '<Rusmiddeltesting antall="2"/>', "Oppmote"),
        ("<Poststed>BERGEN</Poststed>", "<Poststed>BERGEN</Poststed><Poststed>X</Poststed>",
         "schema"),
        ("<Etternavn>Testmann</Etternavn>", "<Etternavn>Testmann</Etternavn>"
         "<Fodselsdato>2026-03-11</Fodselsdato>", "Fodselsdato is after Sendt"),
        ("<Sendt>", "<GjelderOrdreId>c41e5b2a-9f07-4d3b-8e26-1a7c0d9f3b55</GjelderOrdreId><Sendt>",
         "GjelderOrdreId is only allowed"),
        ("<Navn>Testdal politidistrikt</Navn>", f"<Navn>{'x' * 201}</Navn>", "schema"),
    ],
)  # fmt: skip
def test_contract_violations_in_ny(old: str, new: str, reason: str) -> None:
    message = reject(mutate(NY_VOKSEN, old, new))
    assert reason in message


def test_ny_without_person_or_straffesak_or_vilkar() -> None:
    root = etree.fromstring(NY_VOKSEN, safe_parser())
    for name, reason in (
        ("Person", "Person is required for ny"),
        ("Straffesak", "Straffesak is required for ny"),
        ("Vilkar", "Vilkar/Oppmote is required for ny"),
    ):
        copy = etree.fromstring(etree.tostring(root), safe_parser())
        element = copy.find(f"{{{ORDER_NS}}}{name}")
        assert element is not None
        copy.remove(element)
        assert reason in reject(etree.tostring(copy))


def test_endring_rules() -> None:
    missing = mutate(ENDRING, "<GjelderOrdreId>3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20</GjelderOrdreId>", "")
    assert "GjelderOrdreId is required for endring" in reject(missing)
    same = mutate(
        ENDRING,
        "<GjelderOrdreId>3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20",
        "<GjelderOrdreId>C41E5B2A-9F07-4D3B-8E26-1A7C0D9F3B55",
    )
    assert "must differ" in reject(same)
    root = etree.fromstring(ENDRING, safe_parser())
    for name in ("Vilkar", "Straffesak"):
        element = root.find(f"{{{ORDER_NS}}}{name}")
        assert element is not None
        root.remove(element)
    assert "endring changes nothing" in reject(etree.tostring(root))
    testing_only = mutate(ENDRING, '<Oppmote antall="1" frist="2026-08-14"/>', "")
    assert parse_order(testing_only).required_attendances is None
    backwards = mutate(ENDRING, 'fra="2026-06-01"', 'fra="2027-06-02"')
    assert "fra is after til" in reject(backwards)


def test_tilbakekall_needs_the_order_it_withdraws() -> None:
    data = (EXAMPLES_DIR / "tilbakekall.xml").read_bytes()
    stripped = mutate(data, "<GjelderOrdreId>8d0c6f4a-2b19-4c3e-a5d7-6e1f9b0a2c48</GjelderOrdreId>", "")
    assert "GjelderOrdreId is required for tilbakekall" in reject(stripped)


def test_schema_errors_never_quote_values() -> None:
    # A value with quotes and a long digit run inside an enumeration element.
    data = mutate(
        NY_VOKSEN,
        "<Reaksjon>betinget_patalaunnlatelse</Reaksjon>",
        "<Reaksjon>O'Brien 'Hemmelig' 12345678901 x</Reaksjon>",
    )
    message = reject(data)
    assert message.startswith("schema: line 23: Element Reaksjon")
    for secret in ("Brien", "Hemmelig", "123456"):
        assert secret not in message
    wrong_pattern = mutate(NY_VOKSEN, f"<Fodselsnummer>{ADULT_ID}", f"<Fodselsnummer>{ADULT_ID}12")
    message = reject(wrong_pattern)
    assert "Element Fodselsnummer" in message
    assert LONG_DIGITS.search(message) is None


def test_sanitiser_on_raw_libxml_messages() -> None:
    message = (
        "Element '{urn:no:russak:oppmoteordre:1}Fornavn': [facet 'maxLength'] The value "
        "'Kari 14859410023' has a length of '300'; this exceeds the allowed maximum length "
        "of '200'."
    )
    cleaned = sanitise_xml_message(message)
    assert cleaned.startswith("Element Fornavn: [facet …] The value …")
    assert "Kari" not in cleaned and "urn:" not in cleaned
    assert sanitise_xml_message("Bytes: 0xE6 0x72 0x20 0x3C\nline\x00two") == "Bytes: … line two"
    assert sanitise_xml_message("tag mismatch: a14859410023 line 1") == "tag mismatch: a… line 1"
    # libxml2 cuts very long messages short, sometimes inside the quoted value
    cut = "Element 'Reaksjon': [facet 'enumeration'] The value 'Kari Nordmann hemmelig Kari"
    assert sanitise_xml_message(cut) == "Element Reaksjon: [facet …] The value …"


def test_a_value_too_long_for_libxml2s_message_is_not_quoted() -> None:
    """A 230 KB value: the text cap stops it first; without that cap, the message
    libxml2 cuts short must still not carry the start of the value."""
    value = b"Kari Nordmann hemmelig " * 10_000
    data = mutate(NY_VOKSEN, "<Reaksjon>betinget_patalaunnlatelse", "<Reaksjon>" + value.decode())
    assert "the text of element Reaksjon is too long" in reject(data)
    with pytest.raises(OrderError) as info:
        parse_order(data, limits=XmlLimits(max_text=1_000_000))
    assert str(info.value).startswith("schema: line 23: Element Reaksjon: [facet …] The value …")
    assert "Kari" not in str(info.value)


# --------------------------------------------------------------- hostile corpus


@pytest.mark.parametrize("path", sorted(HOSTILE_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_hostile_files_are_refused(path: Path) -> None:
    assert "DTDs and entity declarations are not allowed" in reject(path.read_bytes())


@pytest.mark.parametrize("path", sorted(HOSTILE_DIR.glob("*.xml")), ids=lambda p: p.name)
def test_hostile_files_are_harmless_even_to_the_bare_parser(path: Path) -> None:
    """Second line of defence: the parser itself expands and fetches nothing."""
    try:
        root = etree.fromstring(path.read_bytes(), safe_parser())
    except etree.XMLSyntaxError:
        return  # refusing to parse is harmless too
    text = "".join(str(t) for t in root.itertext())
    assert "root:" not in text
    assert "lollol" not in text
    assert len(etree.tostring(root)) < 10_000


HOSTILE_GENERATED: dict[str, tuple[bytes, str]] = {
    "empty": (b"", "empty document"),
    "whitespace only": (b" \n\t ", "empty document"),
    "pdf": (
        b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
        "not well-formed",
    ),
    "binary": (bytes(range(256)) * 4, "not well-formed"),
    "five megabytes": (
        b"<Oppmoteordre xmlns='urn:no:russak:oppmoteordre:1'><Merknad>"
        + b"a" * (5 * 1024 * 1024)
        + b"</Merknad></Oppmoteordre>",
        "document too large",
    ),
    "nesting 10000 deep": (
        b"<Oppmoteordre xmlns='urn:no:russak:oppmoteordre:1'>"
        + b"<a>" * 10_000
        + b"</a>" * 10_000
        + b"</Oppmoteordre>",
        "nested deeper than 32",  # the streaming pass stops it long before libxml2's 256
    ),
    "nesting 100 deep": (
        b"<Oppmoteordre xmlns='urn:no:russak:oppmoteordre:1'>"
        + b"<a>" * 100
        + b"</a>" * 100
        + b"</Oppmoteordre>",
        "nested deeper than 32",
    ),
    "wrong namespace": (
        NY_VOKSEN.replace(b"urn:no:russak:oppmoteordre:1", b"urn:no:russak:oppmoteordre:2"),
        "not an Oppmoteordre (root {urn:no:russak:oppmoteordre:2}Oppmoteordre)",
    ),
    "no namespace": (
        NY_VOKSEN.replace(b' xmlns="urn:no:russak:oppmoteordre:1"', b""),
        "not an Oppmoteordre (root Oppmoteordre)",
    ),
    "wrong root": ((EXAMPLES_DIR / "melding.xml").read_bytes(), "not an Oppmoteordre"),
    "digits in root namespace": (
        b"<x xmlns='urn:14859410023'/>",
        "not an Oppmoteordre (root {urn:…}x)",
    ),
    "utf-16 with bom and doctype": (
        (HOSTILE_DIR / "billion-laughs.xml").read_text().encode("utf-16"),
        "DTDs and entity declarations",
    ),
    "utf-16 without bom and doctype": (
        (HOSTILE_DIR / "xxe-file.xml").read_text().encode("utf-16-be"),
        "DTDs and entity declarations",
    ),
    "utf-16 without bom or declaration": (
        "<Oppmoteordre xmlns='urn:no:russak:oppmoteordre:1'/>".encode("utf-16-le"),
        "not well-formed",
    ),
    "utf-7 hiding a doctype": (
        b'<?xml version="1.0" encoding="UTF-7"?>+ADwAIQ-DOCTYPE r +AFs-+AF0APg-<r/>',
        "unsupported encoding utf-7",
    ),
    "utf-32": ("<a/>".encode("utf-32"), "UTF-32 is not accepted"),
    "ebcdic": (
        '<?xml version="1.0" encoding="IBM037"?><a/>'.encode("cp037"),
        "EBCDIC is not accepted",
    ),
    "declared utf-8, latin-1 bytes": (
        NY_VOKSEN.decode().encode("latin-1"),
        "not well-formed XML: line 32:",
    ),
    "declared encoding that does not exist": (
        NY_VOKSEN.replace(b'encoding="UTF-8"', b'encoding="x-klingon-12345678"'),
        "unsupported encoding x-klingon-…",
    ),
    "declared utf-16 on utf-8 bytes": (
        NY_VOKSEN.replace(b'encoding="UTF-8"', b'encoding="UTF-16"'),
        "unsupported encoding utf-16",
    ),
    "garbled xml declaration": (b'<?xml version="1.0" encoding=UTF-8?><a/>', "malformed encoding"),
    "undefined entity": (mutate(NY_VOKSEN, "<Fornavn>Ola", "<Fornavn>&ola;"), "not well-formed"),
    "invalid character reference": (
        mutate(NY_VOKSEN, "<Fornavn>Ola", "<Fornavn>&#14859410023;"),
        "not well-formed",
    ),
    "unclosed tag with digits": (
        b"<Oppmoteordre xmlns='urn:no:russak:oppmoteordre:1'><x14859410023></Oppmoteordre>",
        "not well-formed XML",
    ),
    "two roots": (NY_VOKSEN + b"<Oppmoteordre/>", "not well-formed"),
}


@pytest.mark.parametrize("name", sorted(HOSTILE_GENERATED))
def test_hostile_generated_inputs_are_refused(name: str) -> None:
    data, reason = HOSTILE_GENERATED[name]
    message = reject(data)
    assert reason in message, message


def test_size_limit_is_configurable() -> None:
    assert reject(NY_VOKSEN, max_bytes=100) == (f"document too large ({len(NY_VOKSEN)} bytes, limit 100)")
    assert "nested deeper than 2 levels" in reject(NY_VOKSEN, max_depth=2)
    assert parse_order(NY_VOKSEN, max_depth=4).order_id


def test_xinclude_is_not_processed(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("TOPPHEMMELIG-INNHOLD")
    include = (
        f'<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="{secret.as_uri()}" parse="text"/>'
    )
    data = mutate(
        NY_VOKSEN,
        "<Merknad>Personen har ønsket samtale på ettermiddagstid.</Merknad>",
        f"<Merknad>{include}</Merknad>",
    )
    message = reject(data)
    assert message.startswith("schema:")
    assert "TOPPHEMMELIG" not in message
    root = etree.fromstring(data, safe_parser())
    assert "TOPPHEMMELIG" not in etree.tostring(root).decode()


class _CountingHandler(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        body = b'<!ENTITY leak "LEAKED">'
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[tuple[str, list[str]]]:
    handler = type("Handler", (_CountingHandler,), {"hits": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_entities_over_http_are_never_fetched(http_server: tuple[str, list[str]]) -> None:
    base, hits = http_server
    documents = [
        f"<!DOCTYPE r [<!ENTITY x SYSTEM \"{base}/entity\">]><r xmlns='{ORDER_NS}'>&x;</r>",
        f'<!DOCTYPE r SYSTEM "{base}/external.dtd"><r>&leak;</r>',
        f'<!DOCTYPE r [<!ENTITY % p SYSTEM "{base}/param"> %p;]><r>&leak;</r>',
    ]
    for text in documents:
        assert "DTDs and entity declarations" in reject(text.encode())
        # And the parser alone, without the byte check in front of it:
        try:
            root = etree.fromstring(text.encode(), safe_parser())
            assert "LEAKED" not in etree.tostring(root).decode()
        except etree.XMLSyntaxError:
            pass
    # A real request would have been answered long before now.
    time.sleep(0.2)
    assert hits == []


def test_hostile_inputs_stay_small_in_a_memory_capped_process() -> None:
    """Run the worst cases in a child with a 1 GiB address-space cap and a timeout."""
    script = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))
from pathlib import Path
from lxml import etree
from gateway.messages.orders import OrderError, parse_order, safe_parser
hostile = sorted(Path(sys.argv[1]).glob("*.xml"))
docs = [p.read_bytes() for p in hostile]
docs.append(b"<a>" * 100_000 + b"</a>" * 100_000)
docs.append(b"<a>" + b"&amp;" * 200_000 + b"</a>")
for data in docs:
    try:
        parse_order(data, max_bytes=2_000_000)
    except OrderError:
        pass
    else:
        raise SystemExit("accepted hostile input")
    try:
        etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError:
        pass
print("ok", len(docs))
"""
    result = subprocess.run(
        [sys.executable, "-c", script, str(HOSTILE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("ok ")


# ------------------------------------------------------------------ properties

names = st.text(
    alphabet=st.sampled_from("abcdefghijklmnopqrstuvwxyzæøåÆØÅ-' ÉéüÜ"), min_size=1, max_size=40
).filter(lambda s: s.strip() != "")


@st.composite
def valid_orders(draw: st.DrawFn) -> tuple[bytes, dict[str, object]]:
    birth = draw(st.dates(min_value=date(1940, 1, 1), max_value=date(2011, 12, 31)))
    # An individual number that puts the birth year in the right century.
    low, high = (0, 499) if birth.year < 2000 else (500, 999)
    individual = draw(st.integers(low, high))
    national_id = None
    while national_id is None:
        national_id = synthetic_identity_number(birth, individual)
        individual = low + (individual + 1 - low) % (high - low + 1)
    explicit_birth = draw(st.booleans())
    org = None
    while org is None:
        org = org_number_with_check(str(draw(st.integers(80_000_000, 99_999_999))))
    decided = draw(st.dates(min_value=date(2022, 7, 1), max_value=date(2030, 12, 31)))
    end = decided + timedelta(days=draw(st.integers(0, 800)))
    attendances = draw(st.integers(1, 20))
    first, last = draw(names), draw(names)
    guardians = draw(st.lists(st.tuples(names, names), max_size=4))
    offset = timezone(timedelta(minutes=draw(st.integers(-14 * 60, 14 * 60))))
    sent = datetime(2031, 1, 1, 12, 0, tzinfo=offset)
    order_id = str(draw(st.uuids()))
    xml_text = st.text(
        alphabet=st.characters(exclude_categories=("Cs", "Cc", "Cn"), include_characters="\n\t"),
        max_size=200,
    )
    remark = draw(st.one_of(st.none(), xml_text))

    q = f"{{{ORDER_NS}}}"
    root = etree.Element(q + "Oppmoteordre", nsmap={None: ORDER_NS})  # type: ignore[dict-item]

    def sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
        element = etree.SubElement(parent, q + name)
        element.text = text
        return element

    sub(root, "OrdreId", order_id.upper())
    sub(root, "Meldingstype", "ny")
    sub(root, "Sendt", sent.isoformat())
    avsender = sub(root, "Avsender")
    sub(avsender, "Navn", "Politi")
    sub(avsender, "Organisasjonsnummer", org)
    sub(sub(root, "Mottaker"), "Organisasjonsnummer", org)
    sak = sub(root, "Straffesak")
    sub(sak, "Saksnummer", "S-1")
    sub(sak, "Reaksjon", "betinget_dom")
    sub(sak, "Avgjort", decided.isoformat())
    sub(sak, "ProvetidTil", end.isoformat())
    person = sub(root, "Person")
    sub(person, "Fodselsnummer", national_id)
    sub(person, "Fornavn", first)
    sub(person, "Etternavn", last)
    if explicit_birth:
        sub(person, "Fodselsdato", birth.isoformat())
    for g_first, g_last in guardians:
        foresatt = sub(person, "Foresatt")
        sub(foresatt, "Fornavn", g_first)
        sub(foresatt, "Etternavn", g_last)
    oppmote = sub(sub(root, "Vilkar"), "Oppmote")
    oppmote.set("antall", str(attendances))
    if remark is not None:
        sub(root, "Merknad", remark)
    expected: dict[str, object] = {
        "order_id": order_id,
        "sent": sent,
        "national_id": national_id,
        "birth": birth,
        "names": (first.strip(), last.strip()),
        "guardians": [(a.strip(), b.strip()) for a, b in guardians],
        "attendances": attendances,
        "decided": decided,
        "end": end,
        "remark": remark.strip() or None if remark is not None else None,
    }
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8"), expected


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_orders())
def test_generated_valid_orders_parse_to_their_fields(
    case: tuple[bytes, dict[str, object]],
) -> None:
    data, expected = case
    order = parse_order(data)
    assert order.order_id == expected["order_id"]
    assert order.sent == expected["sent"]
    assert order.person is not None
    assert order.person.national_id == expected["national_id"]
    assert order.person.birth_date == expected["birth"]
    assert (order.person.first_name, order.person.last_name) == expected["names"]
    assert [(g.first_name, g.last_name) for g in order.person.guardians] == expected["guardians"]
    assert order.required_attendances == expected["attendances"]
    assert (order.decided_on, order.condition_end) == (expected["decided"], expected["end"])
    assert order.remark == expected["remark"]
    assert Order.from_json(order.to_json()) == order


@settings(max_examples=300, deadline=None)
@given(
    position=st.integers(0, len(NY_VOKSEN) - 1),
    length=st.integers(0, 8),
    replacement=st.binary(max_size=8),
)
def test_mutated_orders_give_an_order_or_a_safe_error(position: int, length: int, replacement: bytes) -> None:
    data = NY_VOKSEN[:position] + replacement + NY_VOKSEN[position + length :]
    try:
        order = parse_order(data)
    except OrderError as exc:
        assert_safe(str(exc))
    else:
        assert order.order_id
