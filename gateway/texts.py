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
from gateway.domain.facts import STATUS_WORDS

STATUS_NB: dict[str, str] = {status.value: words for status, words in STATUS_WORDS.items()}


def oslo(value: datetime) -> datetime:
    """The one conversion from a stored instant (UTC) to what a person reads (Oslo)."""
    return value.astimezone(OSLO)


def nb_date(value: date | datetime | None) -> str:
    if value is None:
        return "–"
    if isinstance(value, datetime):
        local = oslo(value)
        return f"{local.day}.{local.month}.{local.year} kl. {local:%H:%M}"
    return f"{value.day}.{value.month}.{value.year}"


def nb_time(value: datetime) -> str:
    """``HH:MM`` in Oslo time, for a meeting's start."""
    return f"{oslo(value):%H:%M}"


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
    env.filters["nbtime"] = nb_time
    env.filters["status_nb"] = lambda s: STATUS_NB.get(s, s)
    return env


def render(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)
