"""The safe reader for ``Oppmoteordre`` documents (schemas/oppmoteordre-1.xsd).

Orders come from outside (Altinn, e-mail, a dropped file), so ``parse_order`` treats
every byte as hostile and goes from cheap to expensive, refusing as early as it can:

1. size and emptiness;
2. bytes: only a few encodings (an exotic one such as UTF-7 could hide a DTD from the
   byte check), no DTD or entity declaration (``gateway.messages.xmlsafe``);
3. shape: one streaming pass bounds elements, attributes, namespaces, depth and text
   lengths, because XSD validation of a document inside the size limit can still
   cost a minute of CPU (``gateway.messages.xmlcaps``);
4. the hardened parse, the root element, then the XSD;
5. the rules the XSD cannot express, and identity numbers outside
   ``Person/Fodselsnummer`` (``gateway.messages.order_reader``).

Steps 2 to 5 run under a CPU budget (``gateway.messages.budget``) that catches
whatever the caps miss. Every ``OrderError`` message is one line of English, safe
for logs and quarantine reasons: values from the document are never quoted in it,
and digit runs long enough to be an identity number are removed from anything lxml
says.

This module keeps the public names of the order reader; the model and its JSON
round trip are in ``gateway.messages.order_model``.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import replace

from gateway.messages.budget import DEFAULT_CPU_BUDGET, cpu_budget
from gateway.messages.order_model import (
    Address,
    Guardian,
    MessageType,
    Order,
    OrderError,
    Person,
    ReplyType,
    Sender,
    Testing,
)
from gateway.messages.order_reader import read_order
from gateway.messages.xmlcaps import XmlLimits, measure_shape
from gateway.messages.xmlsafe import (
    UnsafeXml,
    check_encoding,
    check_no_dtd,
    load_schema,
    parse_xml,
    safe_name,
    safe_parser,
    sanitise_xml_message,
    schema_errors,
)
from schemas import ORDER_NS, ORDER_XSD

__all__ = [
    "DEFAULT_CPU_BUDGET",
    "Address",
    "Guardian",
    "MessageType",
    "Order",
    "OrderError",
    "Person",
    "ReplyType",
    "Sender",
    "Testing",
    "XmlLimits",
    "load_schema",
    "looks_like_order",
    "parse_order",
    "safe_parser",
    "sanitise_xml_message",
    "schema_errors",
]

log = logging.getLogger(__name__)

_ROOT_TAG = f"{{{ORDER_NS}}}Oppmoteordre"
_NS_VARIANTS = (ORDER_NS.encode("ascii"), ORDER_NS.encode("utf-16-le"), ORDER_NS.encode("utf-16-be"))


def looks_like_order(data: bytes) -> bool:
    """Cheap sniff: does this claim to be an Oppmoteordre? (For mail attachments.)"""
    head = bytes(data[:4096])
    return any(variant in head for variant in _NS_VARIANTS)


@functools.cache
def _schema_names() -> frozenset[str]:
    """Element names the order schema declares: the only names a message may print."""
    root = parse_xml(ORDER_XSD.read_bytes())
    declared = root.iter("{http://www.w3.org/2001/XMLSchema}element")
    return frozenset(str(element.get("name")) for element in declared if element.get("name"))


def _describe(tag: str) -> str:
    namespace, _, name = tag.rpartition("}")
    if namespace == "{" + ORDER_NS and name in _schema_names():
        return f"element {name}"
    return "an element"


def parse_order(
    data: bytes,
    *,
    max_bytes: int = 1_048_576,
    max_depth: int | None = None,
    limits: XmlLimits | None = None,
    cpu_seconds: float | None = DEFAULT_CPU_BUDGET,
) -> Order:
    """Read one Oppmoteordre, or raise OrderError with a safe one-line reason.

    ``limits`` defaults to ``XmlLimits()``, and ``max_depth`` (kept for its callers)
    overrides its depth; ``cpu_seconds=None`` turns the CPU budget off.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise OrderError("document must be bytes")
    data = bytes(data)
    if len(data) > max_bytes:
        raise OrderError(f"document too large ({len(data)} bytes, limit {max_bytes})")
    if not data.strip():
        raise OrderError("empty document")
    caps = limits or XmlLimits()
    if max_depth is not None:
        caps = replace(caps, max_depth=max_depth)
    try:
        with cpu_budget(cpu_seconds, OrderError, "reading the order"):
            order = _parse(data, caps)
    except UnsafeXml as exc:
        raise OrderError(str(exc)) from None
    log.debug("parsed order %s (%s)", order.order_id, order.message_type)
    return order


def _parse(data: bytes, caps: XmlLimits) -> Order:
    check_encoding(data)
    check_no_dtd(data)
    shape = measure_shape(data, caps, _describe)
    root = parse_xml(data)
    if shape is None:
        # The streaming pass failed where the full parse did not: never skip the caps.
        raise UnsafeXml("not well-formed XML (the streaming check could not read it)")
    if root.tag != _ROOT_TAG:
        shown = safe_name(str(root.tag))
        raise UnsafeXml(f"not an Oppmoteordre (root {shown})")
    errors = schema_errors(load_schema(ORDER_XSD), root)
    if errors:
        raise OrderError("schema: " + "; ".join(errors))
    return read_order(root)
