"""The safe reader for ``Oppmoteordre`` documents (schemas/oppmoteordre-1.xsd).

Orders come from outside (Altinn, e-mail, a dropped file), so the reader treats
every byte as hostile: DTDs and entity declarations are refused before lxml sees the
document (no entity expansion, no external fetches), only a few encodings are
accepted (an exotic one such as UTF-7 could hide a DTD from the byte check), depth
and size are bounded, and the document must pass the XSD before any value is read.

Rules that XSD 1.0 cannot express are checked here:

- ``ny`` needs Straffesak (all four children), Person and Vilkar/Oppmote, and must
  not carry GjelderOrdreId;
- ``endring`` and ``tilbakekall`` need GjelderOrdreId, different from OrdreId;
- ``endring`` must change something: Vilkar or Straffesak/ProvetidTil;
- Mottaker names the municipality by Organisasjonsnummer, Kommunenummer or both
  (both is allowed because some senders fill in everything they know; intake
  should prefer the organisation number);
- check digits of Fodselsnummer and organisation numbers, and date order.

Every ``OrderError`` message is one line of English, safe for logs and quarantine
reasons: values from the document are never quoted in it, and digit runs long enough
to be an identity number are removed from anything lxml says.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

from lxml import etree

from gateway.domain.identifiers import (
    InvalidIdentityNumber,
    is_valid_org_number,
    parse_identity_number,
)
from schemas import ORDER_NS, ORDER_XSD

__all__ = [
    "Address",
    "Guardian",
    "MessageType",
    "Order",
    "OrderError",
    "Person",
    "ReplyType",
    "Sender",
    "Testing",
    "load_schema",
    "looks_like_order",
    "parse_order",
    "safe_parser",
    "sanitise_xml_message",
    "schema_errors",
]

log = logging.getLogger(__name__)

MessageType = Literal["ny", "endring", "tilbakekall"]
ReplyType = Literal["altinn", "epost"]

_MESSAGE_TYPES: dict[str, MessageType] = {
    "ny": "ny",
    "endring": "endring",
    "tilbakekall": "tilbakekall",
}
_REPLY_TYPES: dict[str, ReplyType] = {"altinn": "altinn", "epost": "epost"}
_ROOT_TAG = f"{{{ORDER_NS}}}Oppmoteordre"
_JSON_VERSION = 1


class OrderError(ValueError):
    """The document is not an acceptable order; ``str(e)`` is one safe line."""


# --------------------------------------------------------------------------- model


@dataclass(frozen=True, repr=False)
class Address:
    """A postal address for the written summons."""

    lines: tuple[str, ...]
    postal_code: str | None
    city: str | None

    def __repr__(self) -> str:  # personal data stays out of logs and tracebacks
        return "Address(<redacted>)"


@dataclass(frozen=True, repr=False)
class Guardian:
    """A parent or other guardian of a minor (Person/Foresatt)."""

    first_name: str
    last_name: str
    phone: str | None
    email: str | None
    address: Address | None

    def __repr__(self) -> str:
        return "Guardian(<redacted>)"


@dataclass(frozen=True, repr=False)
class Person:
    """The person the order is about.

    ``birth_date`` is the explicit Fodselsdato when given, otherwise the date the
    identity number encodes (None under the 2032 rule or when the century is unknown).
    """

    national_id: str
    first_name: str
    last_name: str
    birth_date: date | None
    address: Address | None
    phone: str | None
    email: str | None
    guardians: tuple[Guardian, ...]

    def __repr__(self) -> str:
        return "Person(<redacted>)"


@dataclass(frozen=True)
class Sender:
    """The police district; ``reply_*`` is where notices go if the order says so."""

    name: str
    org_number: str
    contact_name: str | None
    contact_phone: str | None
    contact_email: str | None
    reply_type: ReplyType | None
    reply_address: str | None


@dataclass(frozen=True)
class Testing:
    """The drug-testing condition (Vilkar/Rusmiddeltesting): how many, and when."""

    count: int
    from_date: date | None
    to_date: date | None


@dataclass(frozen=True, repr=False)
class Order:
    """One parsed and checked Oppmoteordre.

    For ``endring``, a field that is None means "unchanged". ``to_json`` carries
    personal data (the identity number among it): store it only encrypted.
    """

    order_id: str
    message_type: MessageType
    refers_to: str | None
    sent: datetime
    sender: Sender
    recipient_org_number: str | None
    recipient_kommunenummer: str | None
    case_reference: str | None
    reaction: str | None
    decided_on: date | None
    condition_end: date | None
    person: Person | None
    required_attendances: int | None
    attendance_deadline: date | None
    testing: Testing | None
    remark: str | None

    def __repr__(self) -> str:
        return f"Order(order_id={self.order_id!r}, message_type={self.message_type!r})"

    def to_json(self) -> str:
        """Serialise for parking an order (an endring that arrived before its ny)."""
        payload: dict[str, Any] = {"version": _JSON_VERSION, **asdict(self)}
        return json.dumps(payload, default=_json_default, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Order:
        """Inverse of ``to_json``; raises OrderError if the text is not such a dump."""
        try:
            raw = json.loads(text)
            if not isinstance(raw, dict) or raw.get("version") != _JSON_VERSION:
                raise _Malformed("version")
            return _order_from_dict(raw)
        except (_Malformed, ValueError, TypeError, KeyError) as exc:
            raise OrderError("stored order JSON is malformed") from exc


# ------------------------------------------------------------------- safe parsing


def safe_parser() -> etree.XMLParser:
    """The one hardened parser configuration: no DTD, no entities, no network.

    A fresh parser per call, because lxml parsers keep state and are not meant to be
    shared between threads.
    """
    return etree.XMLParser(
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


@functools.cache
def load_schema(path: Path) -> etree.XMLSchema:
    """Load an XSD once per process, with the safe parser (schemas are files we ship)."""
    with path.open("rb") as handle:
        tree = etree.parse(handle, safe_parser())
    return etree.XMLSchema(tree)


# Validation reuses one XMLSchema object, whose error log is per object: serialise.
_SCHEMA_LOCK = threading.Lock()

_QUOTED_NAME = re.compile(r"\b(Element|attribute) '(?:\{[^{}']*\})?([A-Za-z_][\w.\-]{0,80})'")
_NAMESPACE = re.compile(r"\{[^{}\s']*\}")
_QUOTED = re.compile(r"'[^']*'", re.DOTALL)
_BYTES = re.compile(r"Bytes:(?:\s*0x[0-9A-Fa-f]{2})+")
_LONG_DIGITS = re.compile(r"\d{6,}")
_SPACE = re.compile(r"\s+")
_QUOTE_MARK = "\x00"  # stands in for a kept quote while the quoted values are removed


def sanitise_xml_message(message: str, document_values: Iterable[str] = ()) -> str:
    """Make an lxml/libxml2 message safe to log: no values, no long digit runs.

    libxml2 quotes the offending value ("The value '…' is not accepted"), so every
    quoted string goes, except element and attribute names after "Element"/"attribute".
    A value that itself contains a quote would survive that, so values known from the
    document are removed first.
    """
    text = message
    for value in sorted(set(document_values), key=len, reverse=True):
        text = text.replace(value, "…")
    text = "".join(ch if ch.isprintable() else " " for ch in text)
    text = _BYTES.sub("Bytes: …", text)
    text = _QUOTED_NAME.sub(lambda m: f"{m.group(1)} {_QUOTE_MARK}{m.group(2)}{_QUOTE_MARK}", text)
    text = _QUOTED.sub("…", text)
    text = text.replace(_QUOTE_MARK, "")
    text = _NAMESPACE.sub("", text)
    text = _LONG_DIGITS.sub("…", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:300]


def _values_with_quotes(root: etree._Element) -> set[str]:
    """Text and attribute values containing a quote, in the forms libxml2 may print."""
    found: set[str] = set()
    candidates: list[str] = []
    for element in root.iter():
        if element.text:
            candidates.append(element.text)
        candidates.extend(str(v) for v in element.attrib.values())
    for value in candidates:
        if "'" in value:
            found.update({value, value.strip(), _SPACE.sub(" ", value).strip()})
    found.discard("")
    return found


# -------------------------------------------------------------- byte-level checks

_NS_BYTES = ORDER_NS.encode("ascii")
_NS_VARIANTS = (_NS_BYTES, ORDER_NS.encode("utf-16-le"), ORDER_NS.encode("utf-16-be"))
_FORBIDDEN = tuple(
    marker.encode(codec)
    for marker in ("<!doctype", "<!entity")
    for codec in ("utf-8", "utf-16-le", "utf-16-be")
)
_ASCII_ENCODINGS = frozenset(
    {"utf-8", "utf8", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1", "iso-8859-15"}
    | {"windows-1252", "cp1252"}
)
_UTF16_ENCODINGS = frozenset({"utf-16", "utf-16le", "utf-16be"})
_XML_DECL = re.compile(r"^\ufeff?<\?xml\s([^>]{0,300}?)\?>")
_ENCODING_ATTR = re.compile(r"""encoding\s*=\s*(["'])([A-Za-z][A-Za-z0-9._\-]{0,39})\1""")


def looks_like_order(data: bytes) -> bool:
    """Cheap sniff: does this claim to be an Oppmoteordre? (For mail attachments.)"""
    head = bytes(data[:4096])
    return any(variant in head for variant in _NS_VARIANTS)


def _byte_family(data: bytes) -> str:
    """The encoding family libxml2 would guess from the first bytes."""
    head = data[:4]
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\x3c\x00\x00\x00")) or (
        head == b"\x00\x00\x00\x3c"
    ):
        raise OrderError("unsupported encoding: UTF-32 is not accepted")
    if head == b"\x4c\x6f\xa7\x94":
        raise OrderError("unsupported encoding: EBCDIC is not accepted")
    if head.startswith(b"\xff\xfe") or head.startswith(b"\x3c\x00"):
        return "utf-16-le"
    if head.startswith(b"\xfe\xff") or head.startswith(b"\x00\x3c"):
        return "utf-16-be"
    return "ascii"


def _check_encoding(data: bytes) -> None:
    """Accept UTF-8, UTF-16 and the common Latin encodings, nothing exotic."""
    family = _byte_family(data)
    codec = "latin-1" if family == "ascii" else family
    head = data[3:1027] if data.startswith(b"\xef\xbb\xbf") else data[:1024]
    prolog = head.decode(codec, errors="replace")
    match = _XML_DECL.match(prolog)
    if match is None:
        if prolog.lstrip("\ufeff").startswith("<?xml"):
            raise OrderError("malformed XML declaration")
        return
    declaration = match.group(1)
    encoding = _ENCODING_ATTR.search(declaration)
    if encoding is None:
        if "encoding" in declaration:
            raise OrderError("malformed encoding in the XML declaration")
        return
    name = encoding.group(2).lower().replace("_", "-")
    allowed = _UTF16_ENCODINGS if family != "ascii" else _ASCII_ENCODINGS
    if name not in allowed:
        shown = _LONG_DIGITS.sub("…", name)
        raise OrderError(f"unsupported encoding {shown} (or it does not match the bytes)")


def _check_no_dtd(data: bytes) -> None:
    lowered = data.lower()
    if any(marker in lowered for marker in _FORBIDDEN):
        raise OrderError("DTDs and entity declarations are not allowed")


def _safe_name(name: str) -> str:
    """An element name as lxml reports it, fit for a log line."""
    shown = _LONG_DIGITS.sub("…", name)
    return "".join(ch for ch in shown if ch.isprintable())[:120]


def _check_depth(root: etree._Element, limit: int) -> None:
    stack: list[tuple[etree._Element, int]] = [(root, 1)]
    while stack:
        element, depth = stack.pop()
        if depth > limit:
            raise OrderError(f"document nested deeper than {limit} levels")
        stack.extend((child, depth + 1) for child in element)


def _parse_xml(data: bytes) -> etree._Element:
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        # Only the exception's own message: its error_log can carry older entries
        # from the thread's global libxml2 log (earlier schema errors, other documents).
        reason = sanitise_xml_message(str(exc.msg))
        raise OrderError(f"not well-formed XML: line {exc.lineno}: {reason}") from None
    except (LookupError, UnicodeError, ValueError) as exc:
        raise OrderError(f"unreadable XML ({type(exc).__name__})") from None
    if root is None:
        raise OrderError("not well-formed XML: no root element")
    docinfo: Any = root.getroottree().docinfo  # the lxml stubs lack most DocInfo attributes
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise OrderError("DTDs and entity declarations are not allowed")
    if any(True for _ in root.iter(etree.Entity)):
        raise OrderError("DTDs and entity declarations are not allowed")
    return root


def _log_entries(error_log: Any, limit: int = 3) -> list[tuple[int, str]]:
    """The first few (line, message) pairs of an lxml error log."""
    return [(int(entry.line), str(entry.message)) for entry in list(error_log)[:limit]]


def schema_errors(schema: etree.XMLSchema, root: etree._Element, limit: int = 3) -> list[str]:
    """Validate ``root``; return up to ``limit`` sanitised "line N: reason" strings.

    Empty means valid. One XMLSchema object is shared per process and keeps its error
    log on itself, so validation and reading the log happen under one lock.
    """
    with _SCHEMA_LOCK:
        if schema.validate(root):
            return []
        entries = _log_entries(schema.error_log, limit)
    quoted = _values_with_quotes(root)
    return [f"line {line}: {sanitise_xml_message(msg, quoted)}" for line, msg in entries] or ["invalid"]


def _validate(root: etree._Element) -> None:
    errors = schema_errors(load_schema(ORDER_XSD), root)
    if errors:
        raise OrderError("schema: " + "; ".join(errors))


# ----------------------------------------------------------------- value reading


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
        reply_type = _REPLY_TYPES.get(str(channel.get("type", "")).strip())
        reply_address = _text(channel)
        if reply_type is None or reply_address is None:
            raise OrderError("Avsender/Svarkanal needs a type and an address")
        if reply_type == "altinn" and not is_valid_org_number(reply_address):
            raise OrderError("Avsender/Svarkanal of type altinn is not a valid org number")
        if reply_type == "epost" and not _looks_like_email(reply_address):
            raise OrderError("Avsender/Svarkanal of type epost is not an e-mail address")
    return Sender(
        name=_required(_child_text(avsender, "Navn"), "Avsender/Navn"),
        org_number=org_number,
        contact_name=_child_text(contact, "Navn"),
        contact_phone=_child_text(contact, "Telefon"),
        contact_email=_child_text(contact, "Epost"),
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


def _read_order(root: etree._Element) -> Order:
    message_type = _MESSAGE_TYPES.get(_child_text(root, "Meldingstype") or "")
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
        remark=_child_text(root, "Merknad"),
    )


def parse_order(data: bytes, *, max_bytes: int = 1_048_576, max_depth: int = 32) -> Order:
    """Read one Oppmoteordre, or raise OrderError with a safe one-line reason.

    Cheap byte checks first (size, encoding, DTD), then a hardened lxml parse, the
    depth and root checks, the XSD, and finally the rules the XSD cannot express.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise OrderError("document must be bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise OrderError(f"document too large ({len(data)} bytes, limit {max_bytes})")
    if not data.strip():
        raise OrderError("empty document")
    _check_encoding(data)
    _check_no_dtd(data)
    root = _parse_xml(data)
    _check_depth(root, max_depth)
    if root.tag != _ROOT_TAG:
        shown = _safe_name(str(root.tag))
        raise OrderError(f"not an Oppmoteordre (root {shown})")
    _validate(root)
    order = _read_order(root)
    log.debug("parsed order %s (%s)", order.order_id, order.message_type)
    return order


# ------------------------------------------------------------------------- JSON


class _Malformed(Exception):
    """Internal: a stored JSON dump does not have the expected shape."""


def _json_default(value: object) -> str:
    if isinstance(value, datetime | date):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def _get(data: Mapping[str, Any], key: str) -> Any:
    if key not in data:
        raise _Malformed(key)
    return data[key]


def _j_str(data: Mapping[str, Any], key: str) -> str:
    value = _get(data, key)
    if not isinstance(value, str):
        raise _Malformed(key)
    return value


def _j_opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = _get(data, key)
    if value is not None and not isinstance(value, str):
        raise _Malformed(key)
    return value


def _j_opt_int(data: Mapping[str, Any], key: str) -> int | None:
    value = _get(data, key)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise _Malformed(key)
    return value


def _j_opt_date(data: Mapping[str, Any], key: str) -> date | None:
    value = _j_opt_str(data, key)
    return None if value is None else date.fromisoformat(value)


def _j_obj(data: Mapping[str, Any], key: str) -> Mapping[str, Any] | None:
    value = _get(data, key)
    if value is not None and not isinstance(value, dict):
        raise _Malformed(key)
    return value


def _j_list(data: Mapping[str, Any], key: str) -> list[Any]:
    value = _get(data, key)
    if not isinstance(value, list):
        raise _Malformed(key)
    return value


def _address_from_dict(data: Mapping[str, Any] | None) -> Address | None:
    if data is None:
        return None
    lines = _j_list(data, "lines")
    if not all(isinstance(line, str) for line in lines):
        raise _Malformed("lines")
    return Address(tuple(lines), _j_opt_str(data, "postal_code"), _j_opt_str(data, "city"))


def _guardian_from_dict(data: object) -> Guardian:
    if not isinstance(data, dict):
        raise _Malformed("guardians")
    return Guardian(
        first_name=_j_str(data, "first_name"),
        last_name=_j_str(data, "last_name"),
        phone=_j_opt_str(data, "phone"),
        email=_j_opt_str(data, "email"),
        address=_address_from_dict(_j_obj(data, "address")),
    )


def _order_from_dict(data: Mapping[str, Any]) -> Order:
    message_type = _MESSAGE_TYPES.get(_j_str(data, "message_type"))
    if message_type is None:
        raise _Malformed("message_type")
    sent = datetime.fromisoformat(_j_str(data, "sent"))
    if sent.tzinfo is None:
        raise _Malformed("sent")
    sender_data = _j_obj(data, "sender")
    if sender_data is None:
        raise _Malformed("sender")
    reply_type_text = _j_opt_str(sender_data, "reply_type")
    reply_type = None if reply_type_text is None else _REPLY_TYPES.get(reply_type_text)
    if reply_type_text is not None and reply_type is None:
        raise _Malformed("reply_type")
    sender = Sender(
        name=_j_str(sender_data, "name"),
        org_number=_j_str(sender_data, "org_number"),
        contact_name=_j_opt_str(sender_data, "contact_name"),
        contact_phone=_j_opt_str(sender_data, "contact_phone"),
        contact_email=_j_opt_str(sender_data, "contact_email"),
        reply_type=reply_type,
        reply_address=_j_opt_str(sender_data, "reply_address"),
    )
    person_data = _j_obj(data, "person")
    person = None
    if person_data is not None:
        person = Person(
            national_id=_j_str(person_data, "national_id"),
            first_name=_j_str(person_data, "first_name"),
            last_name=_j_str(person_data, "last_name"),
            birth_date=_j_opt_date(person_data, "birth_date"),
            address=_address_from_dict(_j_obj(person_data, "address")),
            phone=_j_opt_str(person_data, "phone"),
            email=_j_opt_str(person_data, "email"),
            guardians=tuple(_guardian_from_dict(g) for g in _j_list(person_data, "guardians")),
        )
    testing_data = _j_obj(data, "testing")
    testing = None
    if testing_data is not None:
        count = _j_opt_int(testing_data, "count")
        if count is None:
            raise _Malformed("count")
        testing = Testing(
            count=count,
            from_date=_j_opt_date(testing_data, "from_date"),
            to_date=_j_opt_date(testing_data, "to_date"),
        )
    return Order(
        order_id=_j_str(data, "order_id"),
        message_type=message_type,
        refers_to=_j_opt_str(data, "refers_to"),
        sent=sent,
        sender=sender,
        recipient_org_number=_j_opt_str(data, "recipient_org_number"),
        recipient_kommunenummer=_j_opt_str(data, "recipient_kommunenummer"),
        case_reference=_j_opt_str(data, "case_reference"),
        reaction=_j_opt_str(data, "reaction"),
        decided_on=_j_opt_date(data, "decided_on"),
        condition_end=_j_opt_date(data, "condition_end"),
        person=person,
        required_attendances=_j_opt_int(data, "required_attendances"),
        attendance_deadline=_j_opt_date(data, "attendance_deadline"),
        testing=testing,
        remark=_j_opt_str(data, "remark"),
    )
