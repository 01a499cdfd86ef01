"""What makes two deliveries the same mail, and whether a person wrote it.

A channel's external id says which item it delivered (a file's content hash, an
IMAP UID), not which mail it is: the same staff command seen again with one more
``Received:`` header, other line endings or through another mailbox has another
hash. So every mail also gets an identity: its Message-ID, or, when it has none, a
fingerprint of what a person wrote (sender, subject, body with normalised line
endings). Intake stores it under a unique constraint, so a command takes effect
once however it is replayed.

Mail that no person wrote is never a command (RFC 3834): auto-replies,
out-of-office notes, delivery reports and read receipts are recognised from the
header section alone, read without decoding encoded words so this costs little
even for a mail that made it past the header caps.
"""

from __future__ import annotations

import email.policy
import hashlib
from email.message import Message
from email.parser import BytesHeaderParser

from gateway.messages.mail import MailContent

_HEADERS = BytesHeaderParser(policy=email.policy.compat32)
_BULK = frozenset({"bulk", "auto_reply", "junk", "list"})


def mail_identity(mail: MailContent) -> str:
    """A 64-character key: the Message-ID's hash, else a fingerprint of the content."""
    if mail.message_id and mail.message_id.strip("<> \t"):
        basis = "message-id\0" + mail.message_id.strip().strip("<>").strip().lower()
    else:
        body = "\n".join(line.rstrip() for line in mail.body_text.replace("\r\n", "\n").split("\n")).strip()
        basis = "\0".join(("content", mail.sender or "", mail.subject.strip(), body))
    return hashlib.sha256(basis.encode("utf-8", "surrogatepass")).hexdigest()


def automatic_reason(raw: bytes) -> str | None:
    """Why this mail was written by a machine, or None when a person may have written it."""
    headers = _header_section(raw)
    auto_submitted = _first(headers, "Auto-Submitted")
    if auto_submitted and auto_submitted.split(";")[0].strip().lower() != "no":
        return f"Auto-Submitted: {auto_submitted.split(';')[0].strip().lower()[:30]}"
    if headers.get("X-Auto-Response-Suppress") is not None:
        return "X-Auto-Response-Suppress"
    precedence = (_first(headers, "Precedence") or "").strip().lower()
    if precedence in _BULK:
        return f"Precedence: {precedence}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        if headers.get(name) is not None:
            return name
    content_type = (_first(headers, "Content-Type") or "").strip().lower()
    if content_type.startswith("multipart/report"):
        return "delivery or read report (multipart/report)"
    if content_type.startswith("message/disposition-notification"):
        return "read receipt"
    content_class = (_first(headers, "Content-Class") or "").strip().lower()
    if content_class in ("urn:content-classes:mdn", "urn:content-classes:dsn"):
        return "read receipt or delivery report (Content-Class)"
    return None


def _header_section(raw: bytes) -> Message:
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    section = raw if end < 0 else raw[: end + 2]
    return _HEADERS.parsebytes(section)


def _first(headers: Message, name: str) -> str | None:
    value = headers.get(name)
    return None if value is None else str(value)
