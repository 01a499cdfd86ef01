"""The gateway's wiring object: settings, database, clock, calendar, channels.

One ``Gateway`` is built per process (CLI command, daemon, demo, test) and passed
explicitly to the services, which keeps every seam injectable: a test swaps the
clock or a channel without patching globals.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from gateway import db
from gateway.clock import SystemClock
from gateway.config import ConfigError, Settings
from gateway.domain.calendar import WorkingCalendar
from gateway.ports import Clock, InboundChannel, OutboundChannel
from gateway.privacy import Cipher, KeyFileError, install_cipher, load_key_file

log = logging.getLogger(__name__)


def host_name() -> str:
    """This host's name, cut so an instance id fits the 64-character lease columns."""
    return socket.gethostname()[:40]


@dataclass
class Gateway:
    settings: Settings
    engine: Engine
    sessions: db.SessionFactory
    clock: Clock
    cipher: Cipher
    calendar: WorkingCalendar = field(default_factory=WorkingCalendar)
    instance_id: str = field(default_factory=lambda: f"{host_name()}:{os.getpid()}:{uuid.uuid4().hex[:8]}")
    _channels: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def session(self) -> Iterator[Session]:
        with db.session_scope(self.sessions) as session:
            yield session

    def channel(self, name: str) -> Any:
        """The connector instance for a configured channel, built once, lazily."""
        if name not in self._channels:
            from gateway.registry import build_channel

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
    from gateway.models import GatewayMeta
    from gateway.privacy import DecryptionError

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
