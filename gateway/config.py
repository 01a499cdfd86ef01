"""Typed, validated settings from one TOML file.

Everything is checked at start so the daemon fails loudly and early, with an error
that names the file and the key (``russak.toml: units[0].org_number: ...``), rather
than at 3 a.m. when the first notice is due. Secrets never live in the TOML: keys
ending in ``_file`` point at files (systemd credentials under
``$CREDENTIALS_DIRECTORY`` work, and ``%d/`` in a path expands to it).
"""

from __future__ import annotations

import os
import tomllib
from datetime import time
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from gateway.domain.identifiers import is_valid_org_number

__all__ = ["ChannelSettings", "ConfigError", "PoliceDistrict", "Settings", "Unit", "load_settings"]


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_org(value: str) -> str:
    value = value.replace(" ", "")
    if not is_valid_org_number(value):
        raise ValueError("not a valid 9-digit organisation number (mod-11 check failed)")
    return value


OrgNumber = Annotated[str, AfterValidator(_check_org)]


def listen_address(value: str) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or a bare ``port`` (then loopback) as (host, port).

    Used for ``gateway.health_listen``: a bare port binds 127.0.0.1, so the health and
    metrics endpoint is never reachable from the network unless a host is written.
    """
    text = value.strip()
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = "127.0.0.1", text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{value!r}: write an IPv6 address in brackets, e.g. [::1]:9464")
    if not host:
        host = "127.0.0.1"
    if not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535")
    return host, int(port_text)


def _check_listen(value: str | None) -> str | None:
    if value is not None:
        listen_address(value)
    return value


ListenAddress = Annotated[str | None, AfterValidator(_check_listen)]


class PoliceDistrict(_Strict):
    """A prosecuting authority a unit receives orders from and reports back to."""

    name: str
    org_number: OrgNumber
    notice_channel: str = Field(description="outbound channel that carries notices to it")
    notice_address: str | None = Field(
        default=None, description="e-mail address or org number at that channel"
    )
    sender_addresses: list[str] = Field(
        default_factory=list,
        description="addresses (or @domain) whose letters are accepted as orders",
    )


class Unit(_Strict):
    """One advisory unit; an intermunicipal unit serves several municipalities."""

    code: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    name: str
    org_number: OrgNumber
    kommunenummer: list[str] = Field(min_length=1)
    staff: list[str] = Field(min_length=1, description="allow-listed staff addresses")
    contact_name: str | None = None
    contact_phone: str | None = None
    contact_email: str | None = None
    staff_names: Literal["full", "initials", "none"] = Field(
        default="initials",
        description="how much of a person's name alert and digest mails carry "
        "(the full case sheet comes only on request: STATUS, case show)",
    )
    notice_policy: Literal["confirm", "auto"] = "confirm"
    auto_notice_after_working_days: int = Field(default=3, ge=0, le=60)
    police: list[PoliceDistrict] = Field(default_factory=list)

    @field_validator("kommunenummer")
    @classmethod
    def _kommunenummer(cls, values: list[str]) -> list[str]:
        for value in values:
            if len(value) != 4 or not value.isdigit():
                raise ValueError(f"kommunenummer {value!r} must be 4 digits")
        return values

    @field_validator("staff")
    @classmethod
    def _staff(cls, values: list[str]) -> list[str]:
        for value in values:
            if "@" not in value:
                raise ValueError(f"staff entry {value!r} is not an e-mail address")
        return [v.strip().lower() for v in values]

    def district_for(self, org_number: str | None) -> PoliceDistrict | None:
        for district in self.police:
            if district.org_number == org_number:
                return district
        return self.police[0] if len(self.police) == 1 else None


class ChannelSettings(BaseModel):
    """A channel entry; ``type`` picks the connector, the rest is the connector's."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    type: str
    inbound: bool = True
    outbound: bool = True

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class GatewaySettings(_Strict):
    database: str = "sqlite:///russak.db"
    key_file: Path = Path("russak.key")
    staff_channel: str = Field(description="outbound channel for staff alerts and digests")
    poll_interval_seconds: float = Field(default=60.0, gt=0)
    tick_interval_seconds: float = Field(default=60.0, gt=0)
    digest_time: time = time(7, 30)
    retention_days: int = Field(default=90, ge=1)
    first_meeting_target_working_days: int = Field(default=10, ge=1, le=100)
    deadline_warning_days: int = Field(default=14, ge=1)
    max_order_bytes: int = Field(default=1_048_576, ge=1024)
    # a message whose processing killed the process this often is quarantined
    max_intake_attempts: int = Field(default=3, ge=1, le=1000)
    retry_for_hours: float = Field(default=72.0, gt=0, description="give up (dead letter) after")
    backoff_base_seconds: float = Field(default=30.0, gt=0)
    backoff_cap_seconds: float = Field(default=3600.0, gt=0)
    lease_seconds: float = Field(default=300.0, gt=0)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    health_listen: ListenAddress = Field(
        default=None,
        description="where the daemon serves /healthz and /metrics (host:port, or a port on "
        "127.0.0.1); off when unset",
    )


class Settings(_Strict):
    gateway: GatewaySettings
    units: list[Unit] = Field(min_length=1)
    channels: list[ChannelSettings] = Field(min_length=1)
    source: Path = Path("russak.toml")

    @model_validator(mode="after")
    def _cross_checks(self) -> Settings:
        names = [c.name for c in self.channels]
        if len(names) != len(set(names)):
            raise ValueError("channels: names must be unique")
        outbound = {c.name for c in self.channels if c.outbound}
        if self.gateway.staff_channel not in outbound:
            raise ValueError(
                f"gateway.staff_channel {self.gateway.staff_channel!r} is not an outbound channel"
            )
        codes = [u.code for u in self.units]
        if len(codes) != len(set(codes)):
            raise ValueError("units: codes must be unique")
        served: dict[str, str] = {}
        for unit in self.units:
            for k in unit.kommunenummer:
                if k in served:
                    raise ValueError(f"kommunenummer {k} is served by both {served[k]} and {unit.code}")
                served[k] = unit.code
            for district in unit.police:
                if district.notice_channel not in outbound:
                    raise ValueError(
                        f"units.{unit.code}.police {district.name!r}: notice_channel "
                        f"{district.notice_channel!r} is not an outbound channel"
                    )
        return self

    @property
    def base_dir(self) -> Path:
        return self.source.parent

    def channel(self, name: str) -> ChannelSettings:
        for channel in self.channels:
            if channel.name == name:
                return channel
        raise KeyError(name)

    def unit(self, code: str) -> Unit:
        for unit in self.units:
            if unit.code == code:
                return unit
        raise KeyError(code)

    def unit_for(self, org_number: str | None, kommunenummer: str | None) -> Unit | None:
        """The unit an order is addressed to (org number first, then municipality)."""
        for unit in self.units:
            if org_number and unit.org_number == org_number:
                return unit
        for unit in self.units:
            if kommunenummer and kommunenummer in unit.kommunenummer:
                return unit
        return None

    def resolve_path(self, value: Path | str) -> Path:
        """A path from the file: ``%d/`` is the credentials directory, relative is the file's."""
        text = str(value)
        if text.startswith("%d/"):
            creds = os.environ.get("CREDENTIALS_DIRECTORY")
            if not creds:
                raise ConfigError(f"{self.source}: {text} needs $CREDENTIALS_DIRECTORY (systemd)")
            return Path(creds) / text[3:]
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.base_dir / path

    def database_url(self) -> str:
        url = self.gateway.database
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != "sqlite://":
            return prefix + str(self.resolve_path(url[len(prefix) :]).resolve())
        return url

    def read_secret(self, value: str) -> str:
        """Read a secret file named by a ``*_file`` key; loud if missing or empty."""
        path = self.resolve_path(value)
        try:
            secret = path.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{self.source}: cannot read secret file {path}: {exc.strerror}") from exc
        if not secret:
            raise ConfigError(f"{self.source}: secret file {path} is empty")
        return secret


def _describe(error: ValidationError, source: Path) -> str:
    lines = []
    for item in error.errors()[:5]:
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        lines.append(f"{source}: {where}: {item['msg']}")
    return "\n".join(lines)


def load_settings(path: Path) -> Settings:
    """Read and validate ``path``; raise ConfigError with file and key on any problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: configuration file not found") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    raw["source"] = path.resolve()
    try:
        return Settings.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from exc
