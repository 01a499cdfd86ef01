"""Synthetic sample data for the demo, the benchmark and the tests.

Every identity number made here is synthetic (month + 80, as in Norway's test
population), so nothing in a demo run, a benchmark or a test can name a real person.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

from lxml import etree

from gateway.domain.identifiers import synthetic_identity_number
from schemas import ORDER_NS

POLICE_ORG = "921000006"
UNIT_ORG = "937000006"
KOMMUNE = "4601"
STAFF = "saksbehandler@kommune.example"
POLICE_SENDER = "patale.testdal@politiet.no"
GATEWAY_ADDRESS = "russak-gateway@kommune.example"


def fnr(birth: date = date(1990, 5, 17), start: int = 100) -> str:
    """The first synthetic identity number for ``birth`` from individual number ``start``."""
    for individual in range(start, 1000):
        value = synthetic_identity_number(birth, individual)
        if value:
            return value
    raise ValueError("no synthetic number for that date")


def order_xml(
    *,
    order_id: str | None = None,
    message_type: str = "ny",
    refers_to: str | None = None,
    sent: datetime | None = None,
    national_id: str | None = None,
    birth: date = date(1990, 5, 17),
    first_name: str = "Ola",
    last_name: str = "Testesen",
    case_reference: str = "24817395",
    reaction: str = "betinget_patalaunnlatelse",
    decided: date = date(2026, 11, 2),
    condition_end: date = date(2028, 11, 2),
    attendances: int = 1,
    attendance_deadline: date | None = date(2027, 3, 1),
    tests: int = 0,
    kommunenummer: str = KOMMUNE,
    guardians: int = 0,
) -> bytes:
    """An Oppmoteordre (ny, endring or tilbakekall) that validates against our XSD."""
    order_id = order_id or str(uuid.uuid4())
    sent_text = (sent or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)).isoformat()
    refers = f"<GjelderOrdreId>{refers_to}</GjelderOrdreId>" if refers_to else ""
    frist = f' frist="{attendance_deadline}"' if attendance_deadline else ""
    testing = f'<Rusmiddeltesting antall="{tests}" fra="{decided}" til="{condition_end}"/>' if tests else ""
    vilkar = f'<Vilkar><Oppmote antall="{attendances}"{frist}/>{testing}</Vilkar>'
    if message_type == "tilbakekall":
        body = ""
    elif message_type == "endring":
        body = (
            f"<Straffesak><Saksnummer>{case_reference}</Saksnummer>"
            f"<ProvetidTil>{condition_end}</ProvetidTil></Straffesak>{vilkar}"
        )
    else:
        foresatte = "".join(
            f"<Foresatt><Fornavn>Foresatt{i + 1}</Fornavn><Etternavn>{last_name}</Etternavn>"
            f"<Telefon>+47 400 00 00{i}</Telefon></Foresatt>"
            for i in range(guardians)
        )
        body = (
            f"<Straffesak><Saksnummer>{case_reference}</Saksnummer><Reaksjon>{reaction}</Reaksjon>"
            f"<Avgjort>{decided}</Avgjort><ProvetidTil>{condition_end}</ProvetidTil></Straffesak>"
            f"<Person><Fodselsnummer>{national_id or fnr(birth)}</Fodselsnummer>"
            f"<Fornavn>{first_name}</Fornavn><Etternavn>{last_name}</Etternavn>"
            f"<Fodselsdato>{birth}</Fodselsdato>{foresatte}</Person>{vilkar}"
        )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Oppmoteordre xmlns="urn:no:russak:oppmoteordre:1">'
        f"<OrdreId>{order_id}</OrdreId><Meldingstype>{message_type}</Meldingstype>{refers}"
        f"<Sendt>{sent_text}</Sendt>"
        "<Avsender><Navn>Testdal politidistrikt</Navn>"
        f"<Organisasjonsnummer>{POLICE_ORG}</Organisasjonsnummer></Avsender>"
        f"<Mottaker><Kommunenummer>{kommunenummer}</Kommunenummer></Mottaker>"
        f"{body}</Oppmoteordre>"
    ).encode()


def mail(
    *,
    sender: str = STAFF,
    subject: str = "",
    body: str = "",
    attachments: list[tuple[str, bytes]] | None = None,
    when: datetime | None = None,
) -> bytes:
    """An RFC 5322 message as a mailbox would deliver it (staff command or police letter)."""
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = GATEWAY_ADDRESS
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when or datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="kommune.example")
    msg.set_content(body)
    for name, data in attachments or []:
        msg.add_attachment(data, maintype="application", subtype="xml", filename=name)
    return msg.as_bytes()


def largest_valid_order() -> bytes:
    """Every optional element, every repetition the schema allows, the longest remark:
    the biggest order the police may legitimately send (tests and benchmarks/attacks.py
    hold it against the parser's caps)."""
    q = f"{{{ORDER_NS}}}"
    root = etree.Element(q + "Oppmoteordre", nsmap={None: ORDER_NS})  # type: ignore[dict-item]

    def sub(parent: etree._Element, name: str, text: str | None = None, **attributes: str) -> etree._Element:
        element = etree.SubElement(parent, q + name, attributes)
        element.text = text
        return element

    def address(parent: etree._Element) -> None:
        adresse = sub(parent, "Adresse")
        for line in range(4):
            sub(adresse, "Linje", f"Lang adresselinje nummer {line} " + "x" * 150)
        sub(adresse, "Postnummer", "5003")
        sub(adresse, "Poststed", "BERGEN")

    sub(root, "OrdreId", "3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20")
    sub(root, "Meldingstype", "ny")
    sub(root, "Sendt", "2026-03-10T09:15:00.123456+01:00")
    avsender = sub(root, "Avsender")
    sub(avsender, "Navn", "Testdal politidistrikt " + "x" * 170)
    sub(avsender, "Organisasjonsnummer", POLICE_ORG)
    kontakt = sub(avsender, "Kontakt")
    sub(kontakt, "Navn", "Politiadvokat Test Testesen")
    sub(kontakt, "Telefon", "+47 400 00 001")
    sub(kontakt, "Epost", "patale.testdal@example.org")
    sub(avsender, "Svarkanal", "patale.testdal@example.org", type="epost")
    mottaker = sub(root, "Mottaker")
    sub(mottaker, "Organisasjonsnummer", UNIT_ORG)
    sub(mottaker, "Kommunenummer", KOMMUNE)
    sak = sub(root, "Straffesak")
    sub(sak, "Saksnummer", "S" * 64)
    sub(sak, "Reaksjon", "ungdomsoppfolging")
    sub(sak, "Avgjort", "2026-03-02")
    sub(sak, "ProvetidTil", "2028-03-02")
    person = sub(root, "Person")
    sub(person, "Fodselsnummer", fnr())
    sub(person, "Fornavn", "Ola " + "x" * 190)
    sub(person, "Etternavn", "Testmann")
    sub(person, "Fodselsdato", "1990-05-17")
    address(person)
    sub(person, "Telefon", "+47 400 00 002")
    sub(person, "Epost", "ola.testmann@example.org")
    for guardian in range(4):
        foresatt = sub(person, "Foresatt")
        sub(foresatt, "Fornavn", f"Foresatt{guardian}")
        sub(foresatt, "Etternavn", "Testmann")
        sub(foresatt, "Telefon", "+47 400 00 003")
        sub(foresatt, "Epost", f"foresatt{guardian}@example.org")
        address(foresatt)
    vilkar = sub(root, "Vilkar")
    sub(vilkar, "Oppmote", antall="20", frist="2026-06-01")
    sub(vilkar, "Rusmiddeltesting", antall="200", fra="2026-03-02", til="2028-03-02")
    sub(root, "Merknad", "Lang merknad med æøå. " * 180)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
