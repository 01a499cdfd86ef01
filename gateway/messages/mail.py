"""Reading one inbound RFC 5322 message safely (police letters and staff commands).

Mail is the most hostile input the gateway sees: anyone can send it, and real
clients produce broken MIME every day. So this module never lets anything but
``MailError`` escape, records what was odd instead of failing where it can, and
turns the sender into one bare address or None; a None sender is never on an
allow-list, so an unreadable or ambiguous From: fails closed.

Signatures of ``multipart/signed`` mail are not verified here; the signed content is
read as if unsigned. Encrypted and opaque-signed S/MIME cannot be read at all.

A mail's size does not bound what parsing it costs (a header of many encoded words,
a flood of parts), so before the ``email`` package sees a byte ``scan_mail`` checks
the raw mail against ``MailLimits`` (``gateway.messages.mail_limits``); the parsed
tree's parts and depth are checked again before any header value is read, and the
whole parse runs under a CPU budget (``gateway.messages.budget``). Every refusal is
a ``MailError``, so intake quarantines the mail instead of crashing or looping on it.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from dataclasses import dataclass
from email.errors import InvalidHeaderDefect
from email.message import EmailMessage, Message, MIMEPart
from typing import Any, cast

import lxml.html
from lxml import etree

from gateway.messages.budget import DEFAULT_CPU_BUDGET, cpu_budget
from gateway.messages.mail_limits import MailError, MailLimits, scan_mail
from gateway.messages.orders import looks_like_order

__all__ = ["BODY_LIMIT", "MailContent", "MailError", "MailLimits", "parse_mail"]

log = logging.getLogger(__name__)

BODY_LIMIT = 100_000  # characters of body text kept; commands and letters fit easily
_HEADER_LIMIT = 1_000
_HTML_LIMIT = 500_000  # characters of HTML read: five times the text that is kept
# One token of HTML. Possessive quantifiers and no "<" outside quotes in a tag, so
# each try stops at the next "<" it sees unquoted and the whole scan stays linear.
_HTML_TOKEN = re.compile(
    r"""(?P<tag></?[A-Za-z][\w:.\-]*+)(?:[^<>"']++|"[^"]*+"|'[^']*+')*+(?:>|\Z)"""
    r"|<!--.*?(?:-->|\Z)"  # a comment: dropped
    r"|<[!?/][^<>]*+(?:>|\Z)"  # a doctype, processing instruction or odd end tag: dropped
    r"|[^<]++"  # text, kept as it is (entities and all)
    r"|<",  # a "<" that starts nothing: escaped
    re.DOTALL,
)
_UNREADABLE_CONTENT = frozenset({"application/pkcs7-mime", "application/x-pkcs7-mime", "multipart/encrypted"})
_XML_TYPES = frozenset({"application/xml", "text/xml"})
_BLOCK_TAGS = (
    "p", "div", "li", "tr", "table", "blockquote", "pre", "ul", "ol",
    "h1", "h2", "h3", "h4", "h5", "h6",
)  # fmt: skip
_SPACE = re.compile(r"\s+")


@dataclass(frozen=True, repr=False)
class MailContent:
    """What the gateway needs from one mail.

    ``sender`` is the bare lower-cased address of the single From: mailbox, or None
    when From: is missing, unparseable or names several mailboxes. ``defects`` lists
    what was wrong with the mail, by name, without any content.
    """

    sender: str | None
    subject: str
    message_id: str | None
    in_reply_to: str | None
    body_text: str
    xml_attachments: tuple[bytes, ...]
    other_attachments: tuple[str, ...]
    defects: tuple[str, ...]

    def __repr__(self) -> str:  # mail content is personal data: keep it out of logs
        return (
            f"MailContent(message_id={self.message_id!r}, "
            f"xml_attachments={len(self.xml_attachments)}, "
            f"other_attachments={len(self.other_attachments)}, defects={self.defects!r})"
        )


def parse_mail(
    raw: bytes,
    *,
    max_bytes: int = 26_214_400,
    limits: MailLimits | None = None,
    cpu_seconds: float | None = DEFAULT_CPU_BUDGET,
) -> MailContent:
    """Parse ``raw``; any failure at all becomes MailError with a safe reason.

    ``limits`` defaults to ``MailLimits()``; ``cpu_seconds=None`` turns the CPU
    budget off.
    """
    if not isinstance(raw, bytes | bytearray | memoryview):
        raise MailError("mail must be bytes")
    raw = bytes(raw)
    if len(raw) > max_bytes:
        raise MailError(f"mail too large ({len(raw)} bytes, limit {max_bytes})")
    if not raw.strip():
        raise MailError("empty mail")
    caps = limits or MailLimits()
    try:
        with cpu_budget(cpu_seconds, MailError, "reading the mail"):
            scan_mail(raw, caps)
            content = _parse(raw, caps)
        return content
    except MailError:
        raise
    except Exception as exc:  # the email package raises many things on broken input
        log.info("unreadable mail (%s)", type(exc).__name__)
        # "from None": the cause may quote mail content, and callers log tracebacks.
        raise MailError(f"unreadable mail ({type(exc).__name__})") from None


def _parse(raw: bytes, limits: MailLimits) -> MailContent:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    _check_structure(message, limits)
    if not message.keys():
        raise MailError("not an e-mail message (no headers)")
    defects: list[str] = []
    sender = _sender(message, defects)
    subject = _header(message, "Subject", defects) or ""
    message_id = _header(message, "Message-ID", defects)
    in_reply_to = _header(message, "In-Reply-To", defects)

    content = _content_root(message)
    body_part = content.get_body(preferencelist=("plain", "html"))
    body_text = _body_text(body_part, defects) if body_part is not None else ""
    xml_attachments, other_attachments = _attachments(content, body_part, defects)

    for part in message.walk():
        defects.extend(type(defect).__name__ for defect in part.defects)
    return MailContent(
        sender=sender,
        subject=subject,
        message_id=message_id,
        in_reply_to=in_reply_to,
        body_text=body_text,
        xml_attachments=tuple(xml_attachments),
        other_attachments=tuple(other_attachments),
        defects=tuple(dict.fromkeys(defects)),
    )


def _check_structure(message: Message, limits: MailLimits) -> None:
    """Count parts and nesting on the parsed tree, touching no header value.

    ``scan_mail`` has bounded both from the bytes already; this is the exact count,
    for whatever the byte scan read differently from the parser (parts nested in an
    attached message count here, for one).
    """
    parts = 0
    stack: list[tuple[Message, int]] = [(message, 0)]
    while stack:
        part, depth = stack.pop()
        parts += 1
        if parts > limits.max_parts:
            raise MailError(f"too many MIME parts (more than {limits.max_parts})")
        if depth > limits.max_depth:
            raise MailError(f"MIME nesting too deep (more than {limits.max_depth} levels)")
        if part.is_multipart():
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((child, depth + 1) for child in children if isinstance(child, Message))


def _header(message: EmailMessage, name: str, defects: list[str]) -> str | None:
    """The first such header, RFC 2047-decoded and unfolded; None if absent or empty."""
    try:
        values = message.get_all(name)
        if not values:
            return None
        if len(values) > 1:
            defects.append(f"several {name} headers")
        text = _SPACE.sub(" ", str(values[0])).strip()
    except Exception as exc:  # a header the email package cannot even decode
        defects.append(f"{name} header unreadable ({type(exc).__name__})")
        return None
    return text[:_HEADER_LIMIT] or None


def _sender(message: EmailMessage, defects: list[str]) -> str | None:
    """The one From: address, or None (with a defect) whenever there is any doubt."""
    try:
        values = message.get_all("From")
        if not values:
            defects.append("no From header")
            return None
        if len(values) > 1:
            defects.append("several From headers")
            return None
        header = values[0]
        if any(isinstance(d, InvalidHeaderDefect) for d in getattr(header, "defects", ())):
            defects.append("From cannot be parsed")
            return None
        addresses: tuple[Any, ...] = tuple(getattr(header, "addresses", ()))
        if len(addresses) != 1:
            defects.append("From cannot be parsed" if not addresses else "From has several")
            return None
        address = addresses[0]
        spec = str(address.addr_spec).strip().lower()
    except Exception as exc:
        defects.append(f"From cannot be parsed ({type(exc).__name__})")
        return None
    if not address.username or not address.domain or not spec.isprintable() or " " in spec:
        defects.append("From cannot be parsed")
        return None
    return spec


def _content_root(message: EmailMessage) -> MIMEPart:
    """Step inside multipart/signed to its content; refuse what we cannot read."""
    content: MIMEPart = message
    for _ in range(8):
        content_type = content.get_content_type()
        if content_type in _UNREADABLE_CONTENT:
            raise MailError("encrypted or opaque-signed mail cannot be read")
        if content_type != "multipart/signed":
            return content
        parts = content.get_payload()
        if not isinstance(parts, list) or not parts:
            raise MailError("signed mail without content")
        content = cast(MIMEPart, parts[0])
    raise MailError("signed mail nested too deep")


def _decoded_text(part: MIMEPart, defects: list[str]) -> str:
    try:
        text = part.get_content()
        if isinstance(text, str):
            return text
    except (LookupError, UnicodeError, ValueError, KeyError) as exc:
        defects.append(f"body text undecodable ({type(exc).__name__})")
    payload = part.get_payload(decode=True)
    return payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else ""


def _html_to_text(html: str, defects: list[str]) -> str:
    """Crude text of an HTML body: script and style dropped, blocks on new lines.

    The HTML is bounded first: only the first ``_HTML_LIMIT`` characters are read,
    because libxml2 builds the whole tree (16 MB of paragraphs took 6.5 s and 1 GB).
    """
    if len(html) > _HTML_LIMIT:
        defects.append("html body truncated")
        html = html[:_HTML_LIMIT]
    parser = lxml.html.HTMLParser(remove_comments=True, remove_pis=True, no_network=True)
    try:
        # Any: the lxml stubs type HTML elements as plain _Element (no text_content).
        document: Any = lxml.html.document_fromstring(_bare_tags(html), parser=parser)
    except (etree.ParserError, ValueError):
        return ""
    for element in list(document.iter("script", "style", "head")):
        element.drop_tree()
    for element in document.iter("br", *_BLOCK_TAGS):
        element.tail = "\n" + (element.tail or "")
    return str(document.text_content())


def _bare_tags(html: str) -> str:
    """``html`` rebuilt from bare tags (``<p>``, ``</p>``) and text, nothing else.

    libxml2's HTML parser compares every attribute of a tag with all those before it:
    40,000 attributes on one tag took 10 s of CPU. Attributes never reach the text,
    so none is let through: every tag is rebuilt from its name alone, and a "<" that
    does not start a tag is escaped. The parser then cannot see an attribute however
    this tokenizer misreads odd markup; at worst a little markup shows in the text.
    """
    pieces: list[str] = []
    for token in _HTML_TOKEN.finditer(html):
        tag, text = token.group("tag"), token.group()
        if tag is not None:
            pieces.append(tag + ">")
        elif text == "<":
            pieces.append("&lt;")
        elif not text.startswith("<"):
            pieces.append(text)
    return "".join(pieces)


def _body_text(part: MIMEPart, defects: list[str]) -> str:
    text = _decoded_text(part, defects)
    if part.get_content_subtype() == "html":
        text = _html_to_text(text, defects)
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    text = text.replace("\xa0", " ")
    if len(text) > BODY_LIMIT:
        defects.append("body text truncated")
        text = text[:BODY_LIMIT]
    return text


def _attachments(
    content: MIMEPart, body_part: Message | None, defects: list[str]
) -> tuple[list[bytes], list[str]]:
    """XML documents (by type, name or namespace sniff) and the names of the rest."""
    xml: list[bytes] = []
    others: list[str] = []
    for part in content.walk():
        if part.is_multipart() or part is body_part:
            continue
        try:
            content_type = part.get_content_type()
            filename = part.get_filename()
            payload = part.get_payload(decode=True)
        except Exception as exc:
            defects.append(f"unreadable part ({type(exc).__name__})")
            continue
        data = payload if isinstance(payload, bytes) else b""
        name = _SPACE.sub(" ", filename).strip() if filename else None
        is_xml = content_type in _XML_TYPES or bool(name and name.lower().endswith(".xml"))
        if is_xml or looks_like_order(data):
            xml.append(data)
        elif name:
            others.append(name[:255])
        elif part.get_content_maintype() == "text" and not part.is_attachment():
            continue  # an inline alternative of the body (the html beside the plain)
        else:
            others.append(f"(unnamed {content_type})")
    return xml, others
