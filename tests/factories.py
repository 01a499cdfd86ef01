"""Builders for test data: orders, staff mails and configurations.

Every identity number is synthetic (month + 80), made by
``synthetic_identity_number``; nothing here could name a real person.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

from gateway.domain.identifiers import synthetic_identity_number

POLICE_ORG = "921000006"
UNIT_ORG = "937000006"
KOMMUNE = "4601"
STAFF = "saksbehandler@kommune.example"
POLICE_SENDER = "patale.testdal@politiet.no"


def fnr(birth: date = date(1990, 5, 17), start: int = 100) -> str:
    for individual in range(start, 500):
        value = synthetic_identity_number(birth, individual)
        if value:
            return value
    raise AssertionError("no synthetic number")


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
    order_id = order_id or str(uuid.uuid4())
    sent_text = (sent or datetime(2026, 11, 20, 9, 0, tzinfo=UTC)).isoformat()
    refers = f"<GjelderOrdreId>{refers_to}</GjelderOrdreId>" if refers_to else ""
    straffesak = (
        f"<Straffesak><Saksnummer>{case_reference}</Saksnummer><Reaksjon>{reaction}</Reaksjon>"
        f"<Avgjort>{decided}</Avgjort><ProvetidTil>{condition_end}</ProvetidTil></Straffesak>"
    )
    frist = f' frist="{attendance_deadline}"' if attendance_deadline else ""
    testing = f'<Rusmiddeltesting antall="{tests}" fra="{decided}" til="{condition_end}"/>' if tests else ""
    vilkar = f'<Vilkar><Oppmote antall="{attendances}"{frist}/>{testing}</Vilkar>'
    foresatte = "".join(
        f"<Foresatt><Fornavn>Foresatt{i}</Fornavn><Etternavn>{last_name}</Etternavn>"
        f"<Telefon>+47 400 00 00{i}</Telefon></Foresatt>"
        for i in range(guardians)
    )
    person = (
        f"<Person><Fodselsnummer>{national_id or fnr(birth)}</Fodselsnummer>"
        f"<Fornavn>{first_name}</Fornavn><Etternavn>{last_name}</Etternavn>"
        f"<Fodselsdato>{birth}</Fodselsdato>{foresatte}</Person>"
    )
    if message_type == "tilbakekall":
        body = ""
    elif message_type == "endring":
        body = (
            f"<Straffesak><Saksnummer>{case_reference}</Saksnummer><ProvetidTil>{condition_end}</ProvetidTil></Straffesak>"
            + vilkar
        )
    else:
        body = straffesak + person + vilkar
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        '<Oppmoteordre xmlns="urn:no:russak:oppmoteordre:1">'
        f"<OrdreId>{order_id}</OrdreId><Meldingstype>{message_type}</Meldingstype>{refers}"
        f"<Sendt>{sent_text}</Sendt>"
        f"<Avsender><Navn>Testdal politidistrikt</Navn><Organisasjonsnummer>{POLICE_ORG}</Organisasjonsnummer></Avsender>"
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
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "russak-gateway@kommune.example"
    msg["Subject"] = subject
    msg["Date"] = format_datetime(when or datetime(2026, 11, 23, 9, 0, tzinfo=UTC))
    msg["Message-ID"] = make_msgid(domain="kommune.example")
    msg.set_content(body)
    for name, data in attachments or []:
        msg.add_attachment(data, maintype="application", subtype="xml", filename=name)
    return msg.as_bytes()


def write_config(
    directory: Path,
    *,
    database: str | None = None,
    notice_policy: str = "confirm",
    auto_days: int = 3,
    extra_gateway: str = "",
) -> Path:
    """A complete configuration on the spool channel, in ``directory``."""
    from gateway.privacy import generate_key_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spool").mkdir(exist_ok=True)
    key = directory / "russak.key"
    if not key.exists():
        generate_key_file(key)
    db = database or "sqlite:///russak.db"
    config = directory / "russak.toml"
    config.write_text(
        f"""
[gateway]
database = "{db}"
key_file = "russak.key"
staff_channel = "spool"
poll_interval_seconds = 0.2
tick_interval_seconds = 0.2
backoff_base_seconds = 1
backoff_cap_seconds = 10
lease_seconds = 5
{extra_gateway}

[[units]]
code = "testdal"
name = "Rådgivende enhet for russaker Testdal"
org_number = "{UNIT_ORG}"
kommunenummer = ["{KOMMUNE}"]
staff = ["{STAFF}"]
contact_name = "Kari Kontakt"
contact_phone = "+47 55 00 00 00"
notice_policy = "{notice_policy}"
auto_notice_after_working_days = {auto_days}

[[units.police]]
name = "Testdal politidistrikt"
org_number = "{POLICE_ORG}"
notice_channel = "spool"
notice_address = "patale.testdal@example.org"
sender_addresses = ["@politiet.no"]

[[channels]]
name = "spool"
type = "spool"
path = "spool"
sender_address = "russak-gateway@kommune.example"
""",
        encoding="utf-8",
    )
    return config
