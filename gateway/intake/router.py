"""Which door a mail goes through: staff command, order, police letter, or none.

Staff mail is handed to the handler ``gateway.app`` registered
(``Gateway.handlers.staff_mail``, the staff commands), so intake never imports the
staff package; orders and letters stay in intake.
"""

from __future__ import annotations

import logging

from sqlalchemy.orm import Session

from gateway.config import Unit as UnitSettings
from gateway.context import Gateway, UnhandledEffect
from gateway.intake.letters import take_letter
from gateway.intake.orders import take_order
from gateway.intake.quarantine import Quarantine
from gateway.messages.mail import MailContent
from gateway.messages.orders import looks_like_order
from gateway.messages.results import CASE_TAG, IntakeResult
from gateway.models import InboundMessage

log = logging.getLogger(__name__)


def _police_units(gw: Gateway, sender: str | None) -> list[UnitSettings]:
    """The units whose police district lists this sender (address or @domain)."""
    if not sender:
        return []
    sender = sender.lower()
    found = []
    for unit in gw.settings.units:
        for district in unit.police:
            if any(
                sender == allowed.lower() or (allowed.startswith("@") and sender.endswith(allowed.lower()))
                for allowed in district.sender_addresses
            ):
                found.append(unit)
                break
    return found


def _letter_unit(units: list[UnitSettings], mail: MailContent) -> UnitSettings:
    """Which of the units sharing a police sender a letter is for.

    A letter has no structured recipient; when one sender serves several units, the
    unit is the one whose name or kommunenummer the letter names, and a letter that
    names none or several of them goes to quarantine (all units' staff are alerted)
    instead of silently to the first unit.
    """
    if len(units) == 1:
        return units[0]
    text = f"{mail.subject}\n{mail.body_text}".lower()
    named = [u for u in units if u.name.lower() in text or any(k in text for k in u.kommunenummer)]
    if len(named) == 1:
        return named[0]
    raise Quarantine(
        "letter from a police sender shared by several units ("
        + ", ".join(u.code for u in units)
        + "); the letter does not say which unit it is for"
    )


def _staff_units(gw: Gateway, sender: str | None) -> list[UnitSettings]:
    if not sender:
        return []
    return [u for u in gw.settings.units if sender.lower() in u.staff]


def route_mail(
    gw: Gateway, session: Session, mail: MailContent, inbound: InboundMessage, *, automatic: str | None
) -> IntakeResult:
    """Staff command, order, police letter, or quarantine; machine-written mail that is
    not from the police is consumed with a log line and no reply (no mail loops)."""
    staff_units = _staff_units(gw, mail.sender)
    staff_sender = bool(staff_units)
    orders = [x for x in mail.xml_attachments if looks_like_order(x)]
    tagged = CASE_TAG.search(mail.subject or "") is not None
    police_units = _police_units(gw, mail.sender)
    police_unit = police_units[0] if police_units else None
    if automatic is not None and police_unit is None:
        log.info("intake: automatic mail (%s); consumed without a reply", automatic)
        return IntakeResult("ignored", reason=f"automatic mail ({automatic}); no reply")
    if staff_sender and (tagged or not orders):
        if gw.handlers.staff_mail is None:
            raise UnhandledEffect("no handler registered for staff mail")
        return gw.handlers.staff_mail(gw, session, mail, inbound)
    if orders:
        # From the police, or forwarded by allow-listed staff (who may already confirm
        # notices, so a forwarded order asks no more trust of them).
        if police_unit is None and not staff_sender:
            raise Quarantine("order by e-mail from a sender that is not an allowed police or staff address")
        # Forwarded by staff: only for the forwarder's own units.
        forwarder_units = None if police_unit is not None else staff_units
        results = [take_order(gw, session, x, inbound, only_units=forwarder_units) for x in orders]
        if len(results) == 1:
            return results[0]
        return IntakeResult("multiple", reason="; ".join(r.describe() for r in results))
    if police_units:
        return take_letter(gw, session, mail, _letter_unit(police_units, mail), inbound.content)
    if tagged:
        log.warning("intake: command-like mail from an address that is not allow-listed; ignored (no reply)")
        return IntakeResult("ignored", reason="command from an address that is not allow-listed")
    raise Quarantine("mail is neither an order nor from an allowed police or staff address")
