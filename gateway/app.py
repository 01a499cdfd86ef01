"""The wiring: opens the Gateway context and registers every handler.

This is the one module above the services that knows them all. The case services,
intake and the outbox tell what happened through ``gateway.effects`` and
``Gateway.handlers``; here each kind of effect, each outbox message kind and staff
mail is given to the part that reacts to it. So data flows one way (channel →
intake → cases → outbox) and no lower part imports a higher one.
"""

from __future__ import annotations

import logging

from gateway import db, effects
from gateway.cases import NoticeDelivery
from gateway.clock import SystemClock
from gateway.config import ConfigError, Settings
from gateway.context import Gateway, Handlers
from gateway.models import GatewayMeta
from gateway.ports import Clock
from gateway.privacy import DecryptionError, KeyFileError, install_cipher, load_key_file
from gateway.staff import alerts, commands

log = logging.getLogger(__name__)


def open_gateway(settings: Settings, *, clock: Clock | None = None, migrate: bool = False) -> Gateway:
    """Load the key, connect the database (migrating when asked) and build the wiring."""
    try:
        cipher = load_key_file(settings.resolve_path(settings.gateway.key_file))
    except KeyFileError as exc:
        raise ConfigError(f"{settings.source}: gateway.key_file: {exc}") from exc
    install_cipher(cipher)
    engine = db.make_engine(settings.database_url())
    if migrate:
        db.migrate(engine)
    elif not db.schema_is_current(engine):
        engine.dispose()
        raise ConfigError(f"{settings.source}: the database schema is missing or old; run `russak migrate`")
    gateway = Gateway(
        settings=settings,
        engine=engine,
        sessions=db.session_factory(engine),
        clock=clock or SystemClock(),
        cipher=cipher,
        handlers=wire(),
    )
    try:
        check_key(gateway)
    except ConfigError:
        engine.dispose()
        raise
    return gateway


KEY_CHECK = "key-check"
_KEY_CHECK_TEXT = b"russak-gateway key check"


def check_key(gw: Gateway) -> None:
    """Refuse a key file that does not belong to this database.

    The first start stores a value encrypted under the key; every later start must
    decrypt it. Without this, a restored backup with the wrong key file (or a wrong
    systemd credential) would start fine and fail on the first case it reads.
    """
    with gw.session() as session:
        row = session.get(GatewayMeta, KEY_CHECK)
        if row is None:
            session.add(GatewayMeta(name=KEY_CHECK, value=gw.cipher.encrypt(_KEY_CHECK_TEXT)))
            return
        try:
            ok = gw.cipher.decrypt(row.value) == _KEY_CHECK_TEXT
        except DecryptionError:
            ok = False
    if not ok:
        raise ConfigError(
            f"{gw.settings.source}: gateway.key_file: the key file does not belong to this database "
            "(none of its keys decrypts the stored data); restore the matching key file"
        )


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
