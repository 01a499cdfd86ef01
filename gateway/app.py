"""The wiring: opens the Gateway context and registers every handler.

This is the one module above the services that knows them all. The case services,
intake and the outbox tell what happened through ``gateway.effects`` and
``Gateway.handlers``; here each kind of effect, each outbox message kind and staff
mail is given to the part that reacts to it. So data flows one way (channel →
intake → cases → outbox) and no lower part imports a higher one.
"""

from __future__ import annotations

from gateway import effects
from gateway.cases import NoticeDelivery
from gateway.config import Settings
from gateway.context import Gateway, Handlers, open_context
from gateway.ports import Clock
from gateway.staff import alerts, commands


def open_gateway(settings: Settings, *, clock: Clock | None = None, migrate: bool = False) -> Gateway:
    """Load the key, connect the database (migrating when asked) and build the wiring."""
    return open_context(settings, clock=clock, migrate=migrate, handlers=wire())


def wire() -> Handlers:
    """Who reacts to what: the one place that connects the layers upwards."""
    handlers = Handlers()
    handlers.on(effects.CaseOpened, lambda gw, s, e: alerts.alert_new_case(gw, s, e.case))
    handlers.on(
        effects.LetterReceived,
        lambda gw, s, e: alerts.alert_needs_registration(gw, s, e.case, original=e.original),
    )
    handlers.on(
        effects.SamePersonFound, lambda gw, s, e: alerts.alert_same_person(gw, s, e.case, list(e.others))
    )
    handlers.on(effects.CaseWithdrawn, lambda gw, s, e: alerts.alert_withdrawn(gw, s, e.case))
    handlers.on(effects.CaseAmended, lambda gw, s, e: alerts.alert_amended(gw, s, e.case))
    handlers.on(effects.NoticeDrafted, lambda gw, s, e: alerts.alert_notice_drafted(gw, s, e.case, e.notice))
    handlers.on(effects.NoticeSent, lambda gw, s, e: alerts.alert_notice_sent(gw, s, e.case, e.notice))
    handlers.on(effects.NoticeFailed, lambda gw, s, e: alerts.alert_notice_failed(gw, s, e.case, e.reason))
    handlers.on(
        effects.Quarantined, lambda gw, s, e: alerts.alert_quarantine(gw, s, e.entry_id, e.channel, e.reason)
    )
    handlers.delivery["notice"] = NoticeDelivery()
    staff_mail = alerts.StaffMailDelivery()
    for kind in ("alert", "digest", "reply"):
        handlers.delivery[kind] = staff_mail
    handlers.staff_mail = commands.handle
    return handlers
