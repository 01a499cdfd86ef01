"""Turns a channel entry of the configuration into a connector instance.

This is the only place the core names connector modules, and it imports them
lazily, so a site that uses only the spool folder never needs exchangelib or msal
installed, and a missing optional dependency gives a clear hint, not a traceback.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from gateway.config import ChannelSettings, ConfigError, Settings
from gateway.ports import Clock

# type -> (module, factory, pip extra)
CONNECTORS: dict[str, tuple[str, str, str | None]] = {
    "spool": ("connectors.spool", "SpoolChannel", None),
}


def build_channel(settings: Settings, entry: ChannelSettings, clock: Clock) -> Any:
    try:
        module_name, factory_name, extra = CONNECTORS[entry.type]
    except KeyError:
        known = ", ".join(sorted(CONNECTORS))
        raise ConfigError(
            f"{settings.source}: channels.{entry.name}.type: unknown type {entry.type!r} (known: {known})"
        ) from None
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        hint = f"; install it with: pip install 'russak-gateway[{extra}]'" if extra else ""
        raise ConfigError(
            f"{settings.source}: channels.{entry.name}: connector {entry.type!r} cannot be loaded "
            f"({exc.name} is missing){hint}"
        ) from exc
    options = entry.options()
    if entry.type == "spool":
        return _spool(settings, entry, options, clock, getattr(module, factory_name))
    return getattr(module, factory_name)(name=entry.name, clock=clock, **options)


def _spool(
    settings: Settings, entry: ChannelSettings, options: dict[str, Any], clock: Clock, factory: Any
) -> Any:
    allowed = {"path", "sender_address", "keep_processed", "settle_seconds", "max_bytes"}
    unknown = set(options) - allowed
    if unknown:
        raise ConfigError(f"{settings.source}: channels.{entry.name}: unknown keys {sorted(unknown)}")
    root = settings.resolve_path(Path(str(options.pop("path", "spool"))))
    return factory(entry.name, root, clock=clock, **options)
