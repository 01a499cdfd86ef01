"""Reading an ``Order`` from a tree that has passed the XSD, and the rules it cannot say.

XSD 1.0 cannot make elements depend on Meldingstype, so these are checked here:

- ``ny`` needs Straffesak (all four children), Person and Vilkar/Oppmote, and must
  not carry GjelderOrdreId;
- ``endring`` and ``tilbakekall`` need GjelderOrdreId, different from OrdreId;
- ``endring`` must change something: Vilkar or Straffesak/ProvetidTil;
- Mottaker names the municipality by Organisasjonsnummer, Kommunenummer or both
  (both is allowed because some senders fill in everything they know; intake
  should prefer the organisation number);
- check digits of Fodselsnummer and organisation numbers, and date order.

Identity numbers belong in ``Person/Fodselsnummer`` only, which is stored encrypted.
One found elsewhere is handled by what the field is for:

- refused (``OrderError`` naming the field, never the number): Straffesak/Saksnummer,
  Avsender/Navn and Avsender/Svarkanal. They are stored in clear and travel to the
  police and into notice subjects; a number there is a mistake the police must fix,
  and a changed case reference or reply address would be worse than none;
- masked with ``gateway.privacy.MASK``: Merknad and Avsender/Kontakt (name, phone,
  e-mail), free text whose rest is still worth keeping.

Every message is one line of English with no value from the document in it.
"""

from __future__ import annotations

import logging
from datetime import date, datetime

from lxml import etree

from gateway.domain.identifiers import (
    InvalidIdentityNumber,
    is_valid_org_number,
    parse_identity_number,
)
from gateway.messages.identity_text import contains_identity_number, mask_identity_numbers
from gateway.messages.order_model import (
    MESSAGE_TYPES,
    REPLY_TYPES,
    Address,
    Guardian,
    Order,
    OrderError,
    Person,
    ReplyType,
    Sender,
    Testing,
)
from schemas import ORDER_NS

__all__ = ["read_order"]

log = logging.getLogger(__name__)


def _q(name: str) -> str:
    return f"{{{ORDER_NS}}}{name}"


def _child(parent: etree._Element | None, name: str) -> etree._Element | None:
    if parent is None:
        return None
    return parent.find(_q(name))


def _text(element: etree._Element | None) -> str | None:
    if element is None:
        return None
    value = "".join(str(part) for part in element.itertext()).strip()
    return value or None


def _child_text(parent: etree._Element | None, name: str) -> str | None:
    return _text(_child(parent, name))


def _required(value: str | None, where: str) -> str:
    if value is None:
        raise OrderError(f"{where} is missing or empty")
    return value


def _refuse_identity_number(value: str | None, where: str) -> None:
    """Refuse an identity number in a field that is stored and sent in clear."""
    if value is not None and contains_identity_number(value):
        raise OrderError(
            f"{where} contains what looks like an identity number (it belongs only in Person/Fodselsnummer)"
        )


def _masked(value: str | None, where: str) -> str | None:
    """Free text with any identity number masked; the rest is worth keeping."""
    if value is None:
        return None
    masked = mask_identity_numbers(value)
    if masked != value:
        log.info("order: masked what looks like an identity number in %s", where)
    return masked


def _to_date(value: str | None, where: str) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value.strip())
    except ValueError:
        raise OrderError(f"{where} is not a valid date") from None


def _read_address(element: etree._Element | None) -> Address | None:
    if element is None:
        return None
    lines = tuple(text for text in (_text(line) for line in element.findall(_q("Linje"))) if text)
    return Address(
        lines=lines,
        postal_code=_child_text(element, "Postnummer"),
        city=_child_text(element, "Poststed"),
    )


def _read_sender(root: etree._Element) -> Sender:
    avsender = _child(root, "Avsender")
    org_number = _required(_child_text(avsender, "Organisasjonsnummer"), "Avsender")
    if not is_valid_org_number(org_number):
        raise OrderError("Avsender/Organisasjonsnummer fails the check digit")
    contact = _child(avsender, "Kontakt")
    channel = _child(avsender, "Svarkanal")
    reply_type: ReplyType | None = None
    reply_address: str | None = None
    if channel is not None:
        reply_type = REPLY_TYPES.get(str(channel.get("type", "")).strip())
        reply_address = _text(channel)
        _refuse_identity_number(reply_address, "Avsender/Svarkanal")
        if reply_type is None or reply_address is None:
            raise OrderError("Avsender/Svarkanal needs a type and an address")
        if reply_type == "altinn" and not is_valid_org_number(reply_address):
            raise OrderError("Avsender/Svarkanal of type altinn is not a valid org number")
        if reply_type == "epost" and not _looks_like_email(reply_address):
            raise OrderError("Avsender/Svarkanal of type epost is not an e-mail address")
    name = _required(_child_text(avsender, "Navn"), "Avsender/Navn")
    _refuse_identity_number(name, "Avsender/Navn")
    return Sender(
        name=name,
        org_number=org_number,
        contact_name=_masked(_child_text(contact, "Navn"), "Avsender/Kontakt/Navn"),
        contact_phone=_masked(_child_text(contact, "Telefon"), "Avsender/Kontakt/Telefon"),
        contact_email=_masked(_child_text(contact, "Epost"), "Avsender/Kontakt/Epost"),
        reply_type=reply_type,
        reply_address=reply_address,
    )


def _looks_like_email(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    return bool(at and local and "." in domain and not any(c.isspace() for c in text))


def _read_person(element: etree._Element | None, sent: datetime) -> Person | None:
    if element is None:
        return None
    national_id = _required(_child_text(element, "Fodselsnummer"), "Person/Fodselsnummer")
    try:
        identity = parse_identity_number(national_id)
    except InvalidIdentityNumber as exc:
        # The exception text is digit-free by contract (gateway.domain.identifiers).
        raise OrderError(f"Person/Fodselsnummer is not valid: {exc}") from None
    birth_date = _to_date(_child_text(element, "Fodselsdato"), "Person/Fodselsdato")
    if birth_date is not None and birth_date > sent.date():
        raise OrderError("Person/Fodselsdato is after Sendt")
    guardians = tuple(
        Guardian(
            first_name=_required(_child_text(g, "Fornavn"), "Person/Foresatt/Fornavn"),
            last_name=_required(_child_text(g, "Etternavn"), "Person/Foresatt/Etternavn"),
            phone=_child_text(g, "Telefon"),
            email=_child_text(g, "Epost"),
            address=_read_address(_child(g, "Adresse")),
        )
        for g in element.findall(_q("Foresatt"))
    )
    return Person(
        national_id=identity.value,
        first_name=_required(_child_text(element, "Fornavn"), "Person/Fornavn"),
        last_name=_required(_child_text(element, "Etternavn"), "Person/Etternavn"),
        birth_date=birth_date if birth_date is not None else identity.birth_date(),
        address=_read_address(_child(element, "Adresse")),
        phone=_child_text(element, "Telefon"),
        email=_child_text(element, "Epost"),
        guardians=guardians,
    )


def _int_attribute(element: etree._Element, name: str, default: int | None) -> int | None:
    raw = element.get(name)
    if raw is None:
        return default
    try:
        return int(str(raw).strip())
    except ValueError:
        raise OrderError(f"attribute {name} is not a whole number") from None


def read_order(root: etree._Element) -> Order:
    """The Order in ``root``, which must already have passed the XSD."""
    message_type = MESSAGE_TYPES.get(_child_text(root, "Meldingstype") or "")
    if message_type is None:
        raise OrderError("Meldingstype is not one of ny, endring, tilbakekall")
    order_id = _required(_child_text(root, "OrdreId"), "OrdreId").lower()
    refers_to_text = _child_text(root, "GjelderOrdreId")
    refers_to = refers_to_text.lower() if refers_to_text else None

    sent_text = _required(_child_text(root, "Sendt"), "Sendt")
    try:
        sent = datetime.fromisoformat(sent_text)
    except ValueError:
        raise OrderError("Sendt is not a valid date and time") from None
    if sent.tzinfo is None or sent.utcoffset() is None:
        raise OrderError("Sendt must carry an offset from UTC")

    sender = _read_sender(root)

    mottaker = _child(root, "Mottaker")
    recipient_org = _child_text(mottaker, "Organisasjonsnummer")
    recipient_kommune = _child_text(mottaker, "Kommunenummer")
    if recipient_org is None and recipient_kommune is None:
        raise OrderError("Mottaker needs Organisasjonsnummer or Kommunenummer")
    if recipient_org is not None and not is_valid_org_number(recipient_org):
        raise OrderError("Mottaker/Organisasjonsnummer fails the check digit")

    straffesak = _child(root, "Straffesak")
    case_reference = _child_text(straffesak, "Saksnummer")
    _refuse_identity_number(case_reference, "Straffesak/Saksnummer")
    reaction = _child_text(straffesak, "Reaksjon")
    decided_on = _to_date(_child_text(straffesak, "Avgjort"), "Straffesak/Avgjort")
    condition_end = _to_date(_child_text(straffesak, "ProvetidTil"), "Straffesak/ProvetidTil")
    if decided_on is not None and condition_end is not None and condition_end < decided_on:
        raise OrderError("Straffesak/ProvetidTil is before Straffesak/Avgjort")

    person = _read_person(_child(root, "Person"), sent)

    vilkar = _child(root, "Vilkar")
    oppmote = _child(vilkar, "Oppmote")
    required_attendances: int | None = None
    attendance_deadline: date | None = None
    if oppmote is not None:
        required_attendances = _int_attribute(oppmote, "antall", 1)
        attendance_deadline = _to_date(oppmote.get("frist"), "Vilkar/Oppmote/@frist")
    testing_element = _child(vilkar, "Rusmiddeltesting")
    testing: Testing | None = None
    if testing_element is not None:
        count = _int_attribute(testing_element, "antall", None)
        if count is None or count < 1:
            raise OrderError("Vilkar/Rusmiddeltesting/@antall must be a positive number")
        testing = Testing(
            count=count,
            from_date=_to_date(testing_element.get("fra"), "Vilkar/Rusmiddeltesting/@fra"),
            to_date=_to_date(testing_element.get("til"), "Vilkar/Rusmiddeltesting/@til"),
        )
        if testing.from_date and testing.to_date and testing.from_date > testing.to_date:
            raise OrderError("Vilkar/Rusmiddeltesting: fra is after til")

    if message_type == "ny":
        if refers_to is not None:
            raise OrderError("GjelderOrdreId is only allowed for endring and tilbakekall")
        if straffesak is None:
            raise OrderError("Straffesak is required for ny")
        for name, value in (
            ("Reaksjon", reaction),
            ("Avgjort", decided_on),
            ("ProvetidTil", condition_end),
        ):
            if value is None:
                raise OrderError(f"Straffesak/{name} is required for ny")
        if person is None:
            raise OrderError("Person is required for ny")
        if oppmote is None:
            raise OrderError("Vilkar/Oppmote is required for ny")
    else:
        if refers_to is None:
            raise OrderError(f"GjelderOrdreId is required for {message_type}")
        if refers_to == order_id:
            raise OrderError("GjelderOrdreId must differ from OrdreId")
        if message_type == "endring" and vilkar is None and condition_end is None:
            raise OrderError("endring changes nothing (needs Vilkar or Straffesak/ProvetidTil)")

    return Order(
        order_id=order_id,
        message_type=message_type,
        refers_to=refers_to,
        sent=sent,
        sender=sender,
        recipient_org_number=recipient_org,
        recipient_kommunenummer=recipient_kommune,
        case_reference=case_reference,
        reaction=reaction,
        decided_on=decided_on,
        condition_end=condition_end,
        person=person,
        required_attendances=required_attendances,
        attendance_deadline=attendance_deadline,
        testing=testing,
        remark=_masked(_child_text(root, "Merknad"), "Merknad"),
    )
