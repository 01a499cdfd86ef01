"""SIGHUP: read the configuration file again and say what a live reload may change.

``read_again`` loads and validates the file the daemon was started with, exactly as a
start would (``gateway.config.load_settings``: errors name the file and the key).
Three settings are fixed for the life of the process, because the open database, the
loaded key and the bound health socket are built from them: ``database``,
``key_file`` and ``health_listen``. A change to one of them is reported and the
running value kept, so the rest of the file can still take effect; a restart applies
it. Everything else (intervals, digest time, units and their staff lists and police
districts, channels, retry and retention settings, the log level) is live.

This module only decides; ``gateway.ops.daemon`` applies the result between two
steps, in the scheduler's single worker, so no step ever sees half of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gateway.config import GatewaySettings, Settings, load_settings

RESTART_ONLY = ("database", "key_file", "health_listen")


@dataclass(frozen=True)
class Reread:
    settings: Settings
    changed: list[str] = field(default_factory=list)  # "gateway.poll_interval_seconds", "units", …
    needs_restart: list[str] = field(default_factory=list)  # changed, but kept until a restart

    def describe(self) -> str:
        """``changed: a, b`` (plus what waits for a restart), or ``no change``."""
        parts = [("changed: " + ", ".join(self.changed)) if self.changed else "no change"]
        if self.needs_restart:
            parts.append("needs a restart to change (running value kept): " + ", ".join(self.needs_restart))
        return "; ".join(parts)


def changed_keys(old: Settings, new: Settings) -> list[str]:
    """The top-level keys (``gateway.*`` one by one) whose value differs."""
    keys = [
        f"gateway.{name}"
        for name in GatewaySettings.model_fields
        if getattr(old.gateway, name) != getattr(new.gateway, name)
    ]
    keys += [name for name in ("units", "channels") if getattr(old, name) != getattr(new, name)]
    return keys


def read_again(current: Settings) -> Reread:
    """The file's settings now, with the restart-only ones kept; ``ConfigError`` if invalid."""
    new = load_settings(current.source)
    kept = {
        name: getattr(current.gateway, name)
        for name in RESTART_ONLY
        if getattr(current.gateway, name) != getattr(new.gateway, name)
    }
    if kept:
        new = new.model_copy(update={"gateway": new.gateway.model_copy(update=kept)})
    return Reread(
        settings=new,
        changed=changed_keys(current, new),
        needs_restart=[f"gateway.{name}" for name in kept],
    )
