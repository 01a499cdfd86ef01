"""Mail to staff: the one way alerts, reminders, digests and command replies are sent.

Everything here goes through the outbox with a dedupe key, so an alert is sent once
however often the code that raises it runs. Subjects carry the case number in
brackets (``[RUS-2026-0042]``) so a reply lands as a command on the right case, and
never a name or identity number. Bodies of alerts and digests carry a name only as
far as the unit's ``staff_names`` allows (initials by default) and never an identity
number; the full case sheet comes on request (STATUS).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

from sqlalchemy.orm import Session

from gateway.context import Gateway
from gateway.delivery import outbox
from gateway.models import Case, OutboxItem
from gateway.ports import Attachment, OutboundMessage
from gateway.texts import render

log = logging.getLogger(__name__)


def _recipients_for(gw: Gateway, case: Case | None, unit_code: str | None = None) -> tuple[str, ...]:
    if case is not None:
        return tuple(gw.settings.unit(case.unit.code).staff)
    if unit_code is not None:
        return tuple(gw.settings.unit(unit_code).staff)
    seen: dict[str, None] = {}
    for unit in gw.settings.units:
        for address in unit.staff:
            seen.setdefault(address, None)
    return tuple(seen)


def send(
    gw: Gateway,
    session: Session,
    *,
    key: str,
    subject: str,
    body: str,
    case: Case | None = None,
    recipients: Sequence[str] | None = None,
    unit_code: str | None = None,
    kind: str = "alert",
    headers: dict[str, str] | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> OutboxItem | None:
    """Enqueue one staff mail: its outbox row, or None when the key was already used
    (each key is sent once)."""
    to = tuple(recipients) if recipients else _recipients_for(gw, case, unit_code)
    if case is not None and f"[{case.number}]" not in subject:
        subject = f"[{case.number}] {subject}"
    # RFC 3834: a machine wrote this; auto-responders must not answer it. (Each mail
    # channel also asks Exchange not to: X-Auto-Response-Suppress, see gateway.ports.)
    all_headers = {"Auto-Submitted": "auto-generated", **(headers or {})}
    message = OutboundMessage(
        key=key,
        kind="mail",
        recipients=to,
        subject=subject,
        body=body,
        headers=all_headers,
        attachments=attachments,
    )
    return outbox.enqueue(
        gw,
        session,
        message,
        kind=kind,
        channel=gw.settings.gateway.staff_channel,
        case_id=case.id if case else None,
    )


def alert(
    gw: Gateway,
    session: Session,
    key: str,
    subject: str,
    headline: str,
    *,
    case: Case | None = None,
    lines: Iterable[str] = (),
    actions: Iterable[str] = (),
    unit_code: str | None = None,
    attachments: tuple[Attachment, ...] = (),
) -> OutboxItem | None:
    """Enqueue one alert (the alert template around ``headline`` and ``lines``)."""
    body = render(
        "alert.txt.j2",
        headline=headline,
        case=case,
        lines=list(lines),
        actions=list(actions),
    )
    return send(
        gw,
        session,
        key=key,
        subject=subject,
        body=body,
        case=case,
        unit_code=unit_code,
        attachments=attachments,
    )


def reply(
    gw: Gateway,
    session: Session,
    key: str,
    to: str,
    subject: str,
    body: str,
    case: Case | None,
    in_reply_to: str | None,
) -> OutboxItem | None:
    headers = {"Auto-Submitted": "auto-replied"}
    if in_reply_to:
        headers |= {"In-Reply-To": in_reply_to, "References": in_reply_to}
    return send(
        gw,
        session,
        key=key,
        subject=subject,
        body=body,
        case=case,
        recipients=[to],
        kind="reply",
        headers=headers,
    )
