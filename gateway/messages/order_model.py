"""The parsed order: ``Order`` and its parts, and their JSON round trip.

An ``Order`` is what the reader (``gateway.messages.order_reader``) makes of a checked
Oppmoteordre. Intake parks an ``endring`` or ``tilbakekall`` that arrives before the
order it names, so an ``Order`` must survive a trip through the database: ``to_json``
and ``from_json``, which refuses anything that is not exactly such a dump.

The classes that hold personal data hide it in ``repr``, so an order in a traceback
or a log line names only its ``OrdreId``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime
from typing import Any, Literal

__all__ = [
    "MESSAGE_TYPES",
    "REPLY_TYPES",
    "Address",
    "Guardian",
    "MessageType",
    "Order",
    "OrderError",
    "Person",
    "ReplyType",
    "Sender",
    "Testing",
]

MessageType = Literal["ny", "endring", "tilbakekall"]
ReplyType = Literal["altinn", "epost"]

MESSAGE_TYPES: dict[str, MessageType] = {
    "ny": "ny",
    "endring": "endring",
    "tilbakekall": "tilbakekall",
}
REPLY_TYPES: dict[str, ReplyType] = {"altinn": "altinn", "epost": "epost"}
_JSON_VERSION = 1


class OrderError(ValueError):
    """The document is not an acceptable order; ``str(e)`` is one safe line."""


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
    message_type = MESSAGE_TYPES.get(_j_str(data, "message_type"))
    if message_type is None:
        raise _Malformed("message_type")
    sent = datetime.fromisoformat(_j_str(data, "sent"))
    if sent.tzinfo is None:
        raise _Malformed("sent")
    sender_data = _j_obj(data, "sender")
    if sender_data is None:
        raise _Malformed("sender")
    reply_type_text = _j_opt_str(sender_data, "reply_type")
    reply_type = None if reply_type_text is None else REPLY_TYPES.get(reply_type_text)
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
