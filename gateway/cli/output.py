"""How the commands print: JSON, times in Oslo with their offset, and who is acting.

One place, so every command prints a time the same way (``2026-12-01 22:07 +01:00``
in text, ISO 8601 with the Oslo offset in JSON) and never a naive UTC time or a
Python repr.
"""

from __future__ import annotations

import json
import os
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import click

OSLO = ZoneInfo("Europe/Oslo")


def oslo(value: datetime) -> datetime:
    return value.astimezone(OSLO)


def _offset(value: datetime) -> str:
    text = f"{value:%z}"  # +0100
    return f"{text[:3]}:{text[3:5]}" if len(text) >= 5 else text


def when(value: datetime | None) -> str:
    """``2026-12-01 22:07 +01:00``: an instant as an operator in Norway reads it."""
    if value is None:
        return "-"
    local = oslo(value)
    return f"{local:%Y-%m-%d %H:%M} {_offset(local)}"


def age(delta: timedelta) -> str:
    """``3 d 4 h``, ``2 h 5 min``, ``40 s``: how long something has waited."""
    seconds = max(0, int(delta.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def jsonable(value: Any) -> Any:
    """Plain JSON values: instants in Oslo time with offset, dates as ISO dates."""
    if isinstance(value, datetime):
        return oslo(value).isoformat() if value.tzinfo else value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return int(value.total_seconds())
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    return value


def instants_in_oslo(value: Any) -> Any:
    """Rewrite ISO instants already made strings (keys ``at`` / ``*_at``) into Oslo time."""
    if isinstance(value, list):
        return [instants_in_oslo(v) for v in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        if isinstance(item, str) and (key == "at" or key.endswith("_at")):
            try:
                parsed = datetime.fromisoformat(item)
            except ValueError:
                parsed = None
            out[key] = oslo(parsed).isoformat() if parsed and parsed.tzinfo else item
        else:
            out[key] = instants_in_oslo(item)
    return out


def dump(data: object) -> None:
    click.echo(json.dumps(jsonable(data), ensure_ascii=False, indent=2))


def operator() -> str:
    """Who runs the command, for the audit log (``cli:<login>``)."""
    try:
        name = os.getlogin()
    except OSError:
        name = str(os.getuid())
    return f"cli:{name}"
