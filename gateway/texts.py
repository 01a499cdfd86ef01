"""Jinja2 environment for what people read (Norwegian bokmål, plain text).

Templates live in ``gateway/templates``; ``StrictUndefined`` makes a missing value a
loud error in tests instead of a silently blank line in a letter to the police.
"""

from __future__ import annotations

from datetime import date, datetime
from functools import lru_cache
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from gateway.clock import OSLO

STATUS_NB = {
    "needs_registration": "må registreres",
    "awaiting_summons": "venter på innkalling",
    "summoned": "innkalt",
    "fulfilled": "oppfylt",
    "noncompliant": "ikke oppfylt",
    "notified": "varslet påtalemyndigheten",
    "withdrawn": "tilbakekalt",
    "closed": "avsluttet",
}


def nb_date(value: date | datetime | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        local = value.astimezone(OSLO)
        return f"{local.day}.{local.month}.{local.year} kl. {local:%H:%M}"
    return f"{value.day}.{value.month}.{value.year}"


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway", "templates"),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - plain-text mail, never HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nbdate"] = nb_date
    env.filters["status_nb"] = lambda s: STATUS_NB.get(s, s)
    return env


def render(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)
