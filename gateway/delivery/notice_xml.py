"""The notice of non-compliance as XML (schemas/melding-1.xsd).

The notice is the one thing this gateway says to the prosecuting authority about a
person, so the document is checked against the published schema before it leaves:
an invalid notice is a bug here, not bad input, and must stop the send loudly
instead of reaching the police in a shape their systems reject.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, Literal

from lxml import etree

from gateway.domain.identifiers import is_valid_identity_number, is_valid_org_number
from gateway.messages.orders import load_schema, schema_errors
from schemas import NOTICE_NS, NOTICE_XSD

__all__ = ["Breach", "BreachType", "NoticeDocument", "SummonsRecord", "build_notice_xml"]

log = logging.getLogger(__name__)

BreachType = Literal["ikke_mott", "prove_ikke_tatt"]
_BREACH_TYPES = frozenset({"ikke_mott", "prove_ikke_tatt"})
# The default namespace; typed Any because the lxml stubs reject a None prefix.
_NSMAP: Any = {None: NOTICE_NS}


@dataclass(frozen=True)
class Breach:
    """One failure to comply: did not attend (``ikke_mott``) or no test taken."""

    type: BreachType
    on: date
    description: str


@dataclass(frozen=True)
class SummonsRecord:
    """A written summons that was sent: when, and how (brev, digipost, ...)."""

    on: date
    channel: str


@dataclass(frozen=True, repr=False)
class NoticeDocument:
    """Everything the notice says. ``order_id`` is None for orders that came as letters."""

    message_id: str
    order_id: str | None
    case_reference: str
    unit_name: str
    unit_org_number: str
    unit_contact_name: str | None
    unit_contact_phone: str | None
    unit_contact_email: str | None
    national_id: str
    person_name: str
    breaches: tuple[Breach, ...]
    summonses: tuple[SummonsRecord, ...]
    sent: datetime

    def __repr__(self) -> str:  # personal data stays out of logs and tracebacks
        return f"NoticeDocument(message_id={self.message_id!r})"


def _sub(parent: etree._Element, name: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, f"{{{NOTICE_NS}}}{name}")
    if text is not None:
        element.text = text
    return element


def _timestamp(when: datetime) -> str:
    """ISO 8601 with an offset in whole minutes, as the schema demands."""
    offset = when.utcoffset()
    if offset is None:
        raise ValueError("NoticeDocument.sent must be an aware datetime")
    if offset.seconds % 60 or offset.microseconds:
        when = when.astimezone(UTC)
    return when.isoformat(timespec="seconds")


def _check(doc: NoticeDocument) -> None:
    if not doc.breaches:
        raise ValueError("a notice needs at least one breach")
    for breach in doc.breaches:
        if breach.type not in _BREACH_TYPES:
            raise ValueError("unknown breach type")
    if not is_valid_identity_number(doc.national_id):
        raise ValueError("NoticeDocument.national_id is not a valid identity number")
    if not is_valid_org_number(doc.unit_org_number):
        raise ValueError("NoticeDocument.unit_org_number fails the check digit")


def build_notice_xml(doc: NoticeDocument) -> bytes:
    """Render ``doc`` as UTF-8 XML and validate it; ValueError means a bug upstream."""
    _check(doc)
    root = etree.Element(f"{{{NOTICE_NS}}}MeldingOmManglendeOppfyllelse", nsmap=_NSMAP)
    _sub(root, "MeldingId", doc.message_id.lower())
    if doc.order_id is not None:
        _sub(root, "GjelderOrdreId", doc.order_id.lower())
    _sub(root, "Saksnummer", doc.case_reference)
    sender = _sub(root, "Avsender")
    _sub(sender, "Navn", doc.unit_name)
    _sub(sender, "Organisasjonsnummer", doc.unit_org_number)
    contact = (doc.unit_contact_name, doc.unit_contact_phone, doc.unit_contact_email)
    if any(contact):
        kontakt = _sub(sender, "Kontakt")
        for name, value in zip(("Navn", "Telefon", "Epost"), contact, strict=True):
            if value:
                _sub(kontakt, name, value)
    person = _sub(root, "Person")
    _sub(person, "Fodselsnummer", doc.national_id)
    _sub(person, "Navn", doc.person_name)
    for breach in doc.breaches:
        brudd = _sub(root, "Brudd")
        brudd.set("type", breach.type)
        _sub(brudd, "Dato", breach.on.isoformat())
        _sub(brudd, "Beskrivelse", breach.description)
    if doc.summonses:
        summonses = _sub(root, "Innkallinger")
        for summons in doc.summonses:
            innkalling = _sub(summonses, "Innkalling")
            _sub(innkalling, "Dato", summons.on.isoformat())
            _sub(innkalling, "Kanal", summons.channel)
    _sub(root, "Sendt", _timestamp(doc.sent))

    # Values (the identity number among them) are stripped from the reasons.
    errors = schema_errors(load_schema(NOTICE_XSD), root)
    if errors:
        raise ValueError("notice does not match melding-1.xsd: " + "; ".join(errors))
    log.debug("built notice %s with %d breach(es)", doc.message_id, len(doc.breaches))
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)
