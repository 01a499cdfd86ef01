"""Identity numbers typed into an order's other fields never get stored in clear.

``Person/Fodselsnummer`` is the one place for the number (stored encrypted). In the
case reference, the sender's name and the reply channel it is refused (those are
stored and sent in clear); in the remark and the prosecutor's contact fields it is
masked. Every number here is synthetic (month + 80).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select

from gateway.context import Gateway
from gateway.intake import pipeline
from gateway.messages.identity_text import contains_identity_number, mask_identity_numbers
from gateway.messages.orders import OrderError, parse_order
from gateway.models import Case, OrderRecord, QuarantineEntry
from gateway.ports import RawMessage
from gateway.privacy import MASK
from schemas import EXAMPLES_DIR
from tests import factories

NY_VOKSEN = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes().decode()
ENDRING = (EXAMPLES_DIR / "endring.xml").read_bytes().decode()
NUMBER = factories.fnr(date(1980, 1, 1))  # 01 81 80 ..., synthetic


def written_forms(number: str) -> dict[str, str]:
    """The ways people write an identity number."""
    d, m, y, rest = number[0:2], number[2:4], number[4:6], number[6:]
    return {
        "11 digits": number,
        "DDMMYY NNNNN": f"{d}{m}{y} {rest}",
        "DDMMYY-NNNNN": f"{d}{m}{y}-{rest}",
        "DD.MM.YY NNNNN": f"{d}.{m}.{y} {rest}",
        "DD.MM.YY-NNNNN": f"{d}.{m}.{y}-{rest}",
        "DD-MM-YY-NNNNN": f"{d}-{m}-{y}-{rest}",
        "DDMMYY - NNNNN": f"{d}{m}{y} - {rest}",
        "DDMMYY.NNNNN": f"{d}{m}{y}.{rest}",
    }


FORMS = written_forms(NUMBER)
# The schema's Telefon and Epost patterns allow only some of the forms.
PHONE_FORMS = ["11 digits", "DDMMYY NNNNN", "DDMMYY-NNNNN", "DD-MM-YY-NNNNN", "DDMMYY - NNNNN"]
EMAIL_FORMS = ["11 digits", "DDMMYY-NNNNN", "DD.MM.YY-NNNNN", "DD-MM-YY-NNNNN", "DDMMYY.NNNNN"]


def assert_no_number(text: str) -> None:
    for form in FORMS.values():
        assert form not in text, text


def mutate(source: str, old: str, new: str) -> bytes:
    assert old in source, old
    return source.replace(old, new, 1).encode()


def refused(data: bytes) -> str:
    with pytest.raises(OrderError) as info:
        parse_order(data)
    message = str(info.value)
    assert not re.search(r"\d{5}", message), message  # no part of the number, not even its tail
    return message


# ------------------------------------------------------------------- the shape


@pytest.mark.parametrize("form", sorted(FORMS))
def test_every_written_form_is_found_and_masked(form: str) -> None:
    text = f"Gjelder {FORMS[form]}, se sak."
    assert contains_identity_number(text)
    assert mask_identity_numbers(text) == f"Gjelder {MASK}, se sak."


@pytest.mark.parametrize(
    "text",
    [
        "Saksnummer 24817395, org 921000006, kommune 4601",
        "Ring +47 400 00 001 eller 0047 40000001",
        "Avgjort 2026-03-02, frist 01.06.2026 kl 10:00",
        "Gjelder ordre 3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20",
        "UUID med sifre a1234567-1234-4123-8123-a01018012345",
        "Tolv sifre 123456789012 er ikke et fødselsnummer",
        "RUS-2026-0042",
    ],
)
def test_what_is_not_an_identity_number_is_left_alone(text: str) -> None:
    assert not contains_identity_number(text)
    assert mask_identity_numbers(text) == text


# ------------------------------------------------------------ refused fields


@pytest.mark.parametrize("form", sorted(FORMS))
def test_in_saksnummer_the_order_is_refused(form: str) -> None:
    data = mutate(NY_VOKSEN, "<Saksnummer>24817395", f"<Saksnummer>{FORMS[form]}")
    assert refused(data) == (
        "Straffesak/Saksnummer contains what looks like an identity number"
        " (it belongs only in Person/Fodselsnummer)"
    )


def test_in_the_saksnummer_of_an_endring_the_order_is_refused() -> None:
    data = mutate(ENDRING, "<Saksnummer>24817395", f"<Saksnummer>RUS {FORMS['DDMMYY NNNNN']}")
    assert refused(data).startswith("Straffesak/Saksnummer contains what looks like an identity number")


@pytest.mark.parametrize("form", sorted(FORMS))
def test_in_the_senders_name_the_order_is_refused(form: str) -> None:
    data = mutate(NY_VOKSEN, "<Navn>Testdal politidistrikt", f"<Navn>Testdal politidistrikt {FORMS[form]}")
    assert refused(data).startswith("Avsender/Navn contains what looks like an identity number")


@pytest.mark.parametrize("form", EMAIL_FORMS)
def test_in_an_e_mail_reply_channel_the_order_is_refused(form: str) -> None:
    channel = f'<Svarkanal type="epost">{FORMS[form]}@politiet.no</Svarkanal>'
    data = mutate(NY_VOKSEN, '<Svarkanal type="altinn">921000006</Svarkanal>', channel)
    assert refused(data).startswith("Avsender/Svarkanal contains what looks like an identity number")


def test_in_an_altinn_reply_channel_the_order_is_refused_for_the_number_first() -> None:
    data = mutate(NY_VOKSEN, ">921000006</Svarkanal>", f">{NUMBER}</Svarkanal>")
    assert refused(data).startswith("Avsender/Svarkanal contains what looks like an identity number")


# ------------------------------------------------------------- masked fields


@pytest.mark.parametrize("form", sorted(FORMS))
def test_in_merknad_the_number_is_masked(form: str) -> None:
    data = mutate(
        NY_VOKSEN,
        "<Merknad>Personen har",
        f"<Merknad>Gjelder {FORMS[form]} og {FORMS[form]}. Personen har",
    )
    order = parse_order(data)
    assert order.remark == f"Gjelder {MASK} og {MASK}. Personen har ønsket samtale på ettermiddagstid."
    assert order.person is not None and order.person.national_id == factories.fnr(date(1994, 5, 14), 100)


@pytest.mark.parametrize("form", sorted(FORMS))
def test_in_the_contact_name_the_number_is_masked(form: str) -> None:
    data = mutate(NY_VOKSEN, "<Navn>Politiadvokat Test Testesen", f"<Navn>Politiadvokat {FORMS[form]}")
    assert parse_order(data).sender.contact_name == f"Politiadvokat {MASK}"


@pytest.mark.parametrize("form", PHONE_FORMS)
def test_in_the_contact_phone_the_number_is_masked(form: str) -> None:
    data = mutate(NY_VOKSEN, "<Telefon>+47 400 00 001", f"<Telefon>{FORMS[form]}")
    assert parse_order(data).sender.contact_phone == MASK


@pytest.mark.parametrize("form", EMAIL_FORMS)
def test_in_the_contact_e_mail_the_number_is_masked(form: str) -> None:
    data = mutate(NY_VOKSEN, "<Epost>patale.testdal@example.org", f"<Epost>{FORMS[form]}@politiet.no")
    assert parse_order(data).sender.contact_email == f"{MASK}@politiet.no"


def test_the_fodselsnummer_itself_is_kept() -> None:
    data = mutate(NY_VOKSEN, "<Fodselsnummer>14859410023", f"<Fodselsnummer>{NUMBER}")
    order = parse_order(data)
    assert order.person is not None and order.person.national_id == NUMBER
    assert order.case_reference == "24817395"
    assert order.sender.contact_phone == "+47 400 00 001"


# -------------------------------------------------------- through intake


def xml_message(gw: Gateway, data: bytes) -> RawMessage:
    return RawMessage(
        channel="spool",
        external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        content=data,
        kind="xml",
        received_at=gw.clock.now(),
    )


def order_with_number_everywhere_masked() -> bytes:
    """A factory order for NUMBER, with NUMBER also in Merknad and the contact fields."""
    base = factories.order_xml(national_id=NUMBER, birth=date(1980, 1, 1)).decode()
    kontakt = (
        f"<Kontakt><Navn>Politiadvokat {FORMS['DD.MM.YY NNNNN']}</Navn>"
        f"<Telefon>{FORMS['DDMMYY NNNNN']}</Telefon>"
        f"<Epost>{FORMS['DDMMYY-NNNNN']}@politiet.no</Epost></Kontakt>"
    )
    base = base.replace("</Organisasjonsnummer></Avsender>", f"</Organisasjonsnummer>{kontakt}</Avsender>")
    return base.replace("</Vilkar>", f"</Vilkar><Merknad>Gjelder {FORMS['11 digits']}.</Merknad>").encode()


def test_intake_stores_the_number_only_encrypted(gw_sqlite: Gateway, tmp_path: Path) -> None:
    result = pipeline.process(gw_sqlite, xml_message(gw_sqlite, order_with_number_everywhere_masked()))
    assert result.outcome == "case", result.describe()
    with gw_sqlite.session() as session:
        case = session.scalars(select(Case)).one()
        assert case.remark == f"Gjelder {MASK}."
        assert case.person is not None and case.person.national_id == NUMBER
        record = session.scalars(select(OrderRecord)).one()
        assert record.payload is not None
        payload = record.payload.replace(f'"national_id": "{NUMBER}"', "")
        assert_no_number(payload)
    # and nothing in the database file holds the number in clear, in any form
    database = Path(str(gw_sqlite.engine.url.database))
    gw_sqlite.engine.dispose()
    with sqlite3.connect(database) as connection:
        dump = "\n".join(connection.iterdump())
    assert_no_number(dump)
    assert (
        '"cases"' in dump and "Testdal politidistrikt" in dump
    )  # the rows are there, in clear where allowed


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("<Saksnummer>24817395", f"<Saksnummer>{FORMS['DD.MM.YY NNNNN']}", "Straffesak/Saksnummer"),
        ("<Navn>Testdal politidistrikt", f"<Navn>Testdal {NUMBER}", "Avsender/Navn"),
        (
            "</Organisasjonsnummer></Avsender>",
            f'</Organisasjonsnummer><Svarkanal type="epost">{NUMBER}@politiet.no</Svarkanal></Avsender>',
            "Avsender/Svarkanal",
        ),
    ],
)
def test_intake_quarantines_a_refused_order_without_the_number(
    gw: Gateway, caplog: pytest.LogCaptureFixture, old: str, new: str, field: str
) -> None:
    data = mutate(factories.order_xml().decode(), old, new)
    with caplog.at_level(logging.DEBUG):
        result = pipeline.process(gw, xml_message(gw, data))
    assert result.outcome == "quarantined"
    assert result.reason == (
        f"invalid order: {field} contains what looks like an identity number"
        " (it belongs only in Person/Fodselsnummer)"
    )
    with gw.session() as session:
        assert session.scalars(select(QuarantineEntry.reason)).all() == [result.reason]
        assert session.scalars(select(Case)).all() == []
    assert_no_number(caplog.text)
