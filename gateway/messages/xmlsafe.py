"""Hardened XML handling shared by every document the gateway reads or checks.

Orders come from outside, so every byte is treated as hostile. This module holds the
parts that do not depend on what the document means:

- ``safe_parser``: the one lxml parser configuration (no DTD, no entities, no network,
  no huge trees);
- ``load_schema`` / ``schema_errors``: XSDs we ship, loaded once, and validation whose
  messages are safe to log;
- ``sanitise_xml_message``: libxml2 quotes offending values in its messages; this
  removes them, and any digit run long enough to be an identity number;
- byte-level refusals before lxml sees anything: exotic encodings (UTF-7 or EBCDIC
  could hide a DTD from the byte check) and DTD or entity declarations;
- ``parse_xml``: the hardened parse itself, with the DTD checks repeated on the tree.

Everything here raises ``UnsafeXml``, whose text is one safe line; the order reader
turns it into ``OrderError``. The streaming pre-pass that bounds the document's shape
before the XSD sees it is in ``gateway.messages.xmlcaps``.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from lxml import etree

__all__ = [
    "UnsafeXml",
    "check_encoding",
    "check_no_dtd",
    "load_schema",
    "parse_xml",
    "safe_name",
    "safe_parser",
    "sanitise_xml_message",
    "schema_errors",
]


class UnsafeXml(ValueError):
    """The bytes were refused as XML; ``str(e)`` is one line, safe for logs."""


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
# A quote that is never closed runs to the end: libxml2 cuts very long messages short,
# and the cut can fall inside the quoted value, which must not survive either.
_QUOTED = re.compile(r"'[^']*(?:'|\Z)", re.DOTALL)
_BYTES = re.compile(r"Bytes:(?:\s*0x[0-9A-Fa-f]{2})+")
LONG_DIGITS = re.compile(r"\d{6,}")
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
    text = LONG_DIGITS.sub("…", text)
    text = _SPACE.sub(" ", text).strip()
    return text[:300]


def safe_name(name: str) -> str:
    """An element name or similar token from the document, fit for a log line."""
    shown = LONG_DIGITS.sub("…", name)
    return "".join(ch for ch in shown if ch.isprintable())[:120]


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


# -------------------------------------------------------------- byte-level checks

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


def _byte_family(data: bytes) -> str:
    """The encoding family libxml2 would guess from the first bytes."""
    head = data[:4]
    if head.startswith((b"\xff\xfe\x00\x00", b"\x00\x00\xfe\xff", b"\x3c\x00\x00\x00")) or (
        head == b"\x00\x00\x00\x3c"
    ):
        raise UnsafeXml("unsupported encoding: UTF-32 is not accepted")
    if head == b"\x4c\x6f\xa7\x94":
        raise UnsafeXml("unsupported encoding: EBCDIC is not accepted")
    if head.startswith(b"\xff\xfe") or head.startswith(b"\x3c\x00"):
        return "utf-16-le"
    if head.startswith(b"\xfe\xff") or head.startswith(b"\x00\x3c"):
        return "utf-16-be"
    return "ascii"


def check_encoding(data: bytes) -> None:
    """Accept UTF-8, UTF-16 and the common Latin encodings, nothing exotic."""
    family = _byte_family(data)
    codec = "latin-1" if family == "ascii" else family
    head = data[3:1027] if data.startswith(b"\xef\xbb\xbf") else data[:1024]
    prolog = head.decode(codec, errors="replace")
    match = _XML_DECL.match(prolog)
    if match is None:
        if prolog.lstrip("\ufeff").startswith("<?xml"):
            raise UnsafeXml("malformed XML declaration")
        return
    declaration = match.group(1)
    encoding = _ENCODING_ATTR.search(declaration)
    if encoding is None:
        if "encoding" in declaration:
            raise UnsafeXml("malformed encoding in the XML declaration")
        return
    name = encoding.group(2).lower().replace("_", "-")
    allowed = _UTF16_ENCODINGS if family != "ascii" else _ASCII_ENCODINGS
    if name not in allowed:
        shown = LONG_DIGITS.sub("…", name)
        raise UnsafeXml(f"unsupported encoding {shown} (or it does not match the bytes)")


def check_no_dtd(data: bytes) -> None:
    """Refuse DTDs and entity declarations by their bytes, before any parser runs."""
    lowered = data.lower()
    if any(marker in lowered for marker in _FORBIDDEN):
        raise UnsafeXml("DTDs and entity declarations are not allowed")


def parse_xml(data: bytes) -> etree._Element:
    """The hardened parse; the DTD and entity checks are repeated on the tree."""
    try:
        root = etree.fromstring(data, safe_parser())
    except etree.XMLSyntaxError as exc:
        # Only the exception's own message: its error_log can carry older entries
        # from the thread's global libxml2 log (earlier schema errors, other documents).
        reason = sanitise_xml_message(str(exc.msg))
        raise UnsafeXml(f"not well-formed XML: line {exc.lineno}: {reason}") from None
    except (LookupError, UnicodeError, ValueError) as exc:
        raise UnsafeXml(f"unreadable XML ({type(exc).__name__})") from None
    if root is None:
        raise UnsafeXml("not well-formed XML: no root element")
    docinfo: Any = root.getroottree().docinfo  # the lxml stubs lack most DocInfo attributes
    if docinfo.doctype or docinfo.internalDTD is not None or docinfo.externalDTD is not None:
        raise UnsafeXml("DTDs and entity declarations are not allowed")
    if any(True for _ in root.iter(etree.Entity)):
        raise UnsafeXml("DTDs and entity declarations are not allowed")
    return root
