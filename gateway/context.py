"""The Gateway context every service is handed: settings, database, clock, cipher,
calendar, channels, and the handlers ``gateway.app`` wired in.

One ``Gateway`` is built per process (CLI command, daemon, demo, test) and passed
explicitly, which keeps every seam injectable: a test swaps the clock or a channel
without patching globals. It lives low in the layering (it knows no service), so
every layer can take it as a parameter; ``gateway.app`` builds it and registers the
handlers through which lower layers tell higher ones what happened.

``open_context`` opens one: it loads the key file, connects the database (migrating
when asked), and refuses a key that does not belong to the database. It wires
nothing, so a command that only reads (``russak cases``, ``status``, the listings)
opens the same database with the same key and the same ORM without importing
intake, staff, the outbox or the case services: an effect emitted through a context
opened without handlers raises ``UnhandledEffect`` instead of going nowhere.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from gateway import db
from gateway.clock import SystemClock
from gateway.config import ConfigError, Settings
from gateway.domain.calendar import WorkingCalendar
from gateway.models import GatewayMeta, InboundMessage, OutboxItem
from gateway.ports import Clock, InboundChannel, OutboundChannel, Receipt
from gateway.privacy import Cipher, DecryptionError, KeyFileError, install_cipher, load_key_file
from gateway.registry import build_channel

if TYPE_CHECKING:
    # Types only: the mail reader loads lxml and the e-mail package, which a command
    # that lists cases never needs.
    from gateway.messages.mail import MailContent
    from gateway.messages.results import IntakeResult

E = TypeVar("E")


def host_name() -> str:
    """This host's name, cut so an instance id fits the 64-character lease columns."""
    return socket.gethostname()[:40]


class DeliveryHandler(Protocol):
    """What the outbox asks and tells about one kind of message (``notice``, ``reply``…).

    The outbox knows message kinds, not cases: whoever owns a kind decides whether a
    claimed row may still go, and what a delivery or a dead letter means.
    """

    def may_send(self, gw: Gateway, session: Session, item: OutboxItem) -> bool: ...

    def delivered(self, gw: Gateway, session: Session, item: OutboxItem, receipt: Receipt) -> None: ...

    def failed(self, gw: Gateway, session: Session, item: OutboxItem, reason: str) -> None: ...


StaffMailHandler = Callable[["Gateway", Session, "MailContent", InboundMessage], "IntakeResult"]


class UnhandledEffect(RuntimeError):
    """An effect or message kind reached the wiring with no handler registered."""


@dataclass
class Handlers:
    """The registry ``gateway.app`` fills (see ``gateway.effects``); one per Gateway."""

    effects: dict[type, list[Callable[[Any, Session, Any], None]]] = field(default_factory=dict)
    delivery: dict[str, DeliveryHandler] = field(default_factory=dict)
    staff_mail: StaffMailHandler | None = None

    def on(self, kind: type[E], handler: Callable[[Gateway, Session, E], None]) -> None:
        self.effects.setdefault(kind, []).append(handler)

    def for_delivery(self, kind: str) -> DeliveryHandler:
        try:
            return self.delivery[kind]
        except KeyError:
            raise UnhandledEffect(f"no delivery handler registered for outbox kind {kind!r}") from None


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    sessions: db.SessionFactory
    clock: Clock
    cipher: Cipher
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    instance_id: str = field(default_factory=lambda: f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    handlers: Handlers = field(default_factory=Handlers)
    _channels: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with db.session_scope(self.sessions) as session:
            yield session

    def emit(self, session: Session, effect: object) -> None:
        """Hand ``effect`` to every handler registered for its type, in this transaction."""
        handlers = self.handlers.effects.get(type(effect))
        if not handlers:
            raise UnhandledEffect(f"no handler registered for {type(effect).__name__}")
        for handler in handlers:
            handler(self, session, effect)

    def channel(self, name: str) -> Any:
        """The connector instance for a configured channel, built once, lazily."""
        if name not in self._channels:
            self._channels[name] = build_channel(self.settings, self.settings.channel(name), self.clock)
        return self._channels[name]

    def inbound_channels(self) -> list[InboundChannel]:
        return [self.channel(c.name) for c in self.settings.channels if c.inbound]

    def outbound_channel(self, name: str) -> OutboundChannel:
        channel: OutboundChannel = self.channel(name)
        return channel

    def close(self) -> None:
        for channel in self._channels.values():
            closer = getattr(channel, "close", None)
            if callable(closer):
                closer()
        self.engine.dispose()


def open_context(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate: bool = False,
    handlers: Handlers | None = None,
) -> Gateway:
    """Load the key, connect the database (migrating when asked) and check the key.

    ``gateway.app.open_gateway`` passes the handlers it wires; a command that only
    reads passes none.
    """
    try:
        cipher = load_key_file(settings.resolve_path(settings.gateway.key_file))
    except KeyFileError as exc:
        raise ConfigError(f"{settings.source}: gateway.key_file: {exc}") from exc
    install_cipher(cipher)
    engine = db.make_engine(settings.database_url())
    if migrate:
        db.migrate(engine)
    elif not db.schema_is_current(engine):
        revision = db.schema_revision(engine)
        engine.dispose()
        raise ConfigError(f"{settings.source}: {db.schema_mismatch(revision)}")
    gateway = Gateway(
        settings=settings,
        engine=engine,
        sessions=db.session_factory(engine),
        clock=clock or SystemClock(),
        cipher=cipher,
        handlers=handlers if handlers is not None else Handlers(),
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
    meta = GatewayMeta.__table__.c
    with gw.session() as session:
        # Read through the table, not the mapped class, so that a command which then
        # only lists rows never pays for configuring the mappers.
        stored = session.scalar(select(meta.value).where(meta.name == KEY_CHECK))
        if stored is None:
            session.add(GatewayMeta(name=KEY_CHECK, value=gw.cipher.encrypt(_KEY_CHECK_TEXT)))
            return
        try:
            ok = gw.cipher.decrypt(stored) == _KEY_CHECK_TEXT
        except DecryptionError:
            ok = False
    if not ok:
        raise ConfigError(
            f"{gw.settings.source}: gateway.key_file: the key file does not belong to this database "
            "(none of its keys decrypts the stored data); restore the matching key file"
        )
