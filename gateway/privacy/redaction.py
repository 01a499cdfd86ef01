"""Masking identity numbers in text: the rule, and the logging filter and formatter.

The rule is deliberately blunt: any run of 11 digits (optionally split 6 + 5) is
masked, valid or not, because a typo'd identity number is still personal data and a
log line has no way to tell. What must stay readable (organisation numbers, dates,
case numbers such as RUS-2026-0001, UUIDs) has a different shape.

Log records are redacted twice on purpose: the filter bakes and masks the record
before any formatter sees it (message, arguments, traceback, stack, ``extra``
fields), and the formatters mask their finished output, which catches text that a
format string or a formatter added itself.
"""

from __future__ import annotations

import logging
import re
import types

from gateway.domain.identifiers import IDENTITY_SHAPED

__all__ = ["MASK", "RedactingFilter", "RedactingFormatter", "extra_fields", "redact", "redact_value"]

MASK = "*" * 11
_UUID = r"[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}"
# Six digits, an optional separator (space, no-break space, dot, hyphen), five digits,
# not inside a longer digit run. UUIDs are matched first and kept whole, because their
# hex groups can hold an 11-digit run next to a letter.
_SENSITIVE = re.compile(rf"(?P<uuid>{_UUID})|{IDENTITY_SHAPED}")

# What every LogRecord has; anything else on a record came in through ``extra=``.
_STANDARD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _mask(match: re.Match[str]) -> str:
    return match[0] if match["uuid"] else MASK


def redact(text: str) -> str:
    """Mask everything shaped like an identity number, valid or not.

    Any 11-digit run is masked, not only numbers that pass the check digits: a typo'd
    identity number is still personal data. Organisation numbers (9 digits), dates,
    case numbers such as RUS-2026-0001 and UUIDs are left readable.
    """
    return _SENSITIVE.sub(_mask, text)


def redact_value(value: object) -> object:
    """``value`` with identity numbers masked, keeping its type where that is safe.

    For structured output (``extra`` fields, JSON): text is redacted; a number stays a
    number unless its digits look like an identity number (``extra={"case": 17859010067}``),
    then it becomes the mask; ``None`` and booleans pass; anything else becomes its
    redacted ``str``.
    """
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, int | float):
        written = str(value)
        masked = redact(written)
        return value if masked == written else masked
    return redact(str(value))


def extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The attributes a record was given through ``extra=``."""
    return {name: value for name, value in vars(record).items() if name not in _STANDARD_ATTRIBUTES}


_PLAIN_FORMATTER = logging.Formatter()


class RedactingFilter(logging.Filter):
    """Handler filter that bakes the message and redacts it, tracebacks included.

    The record's arguments are merged into the message first, because the identity
    number is usually an argument, not part of the format string. Text and numbers
    given through ``extra=`` are masked in place; other objects are left as they are
    (another handler may need their type) and masked by the formatters on output.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            message = f"{record.msg!s} [log arguments could not be formatted]"
        record.msg = redact(message)
        record.args = ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _PLAIN_FORMATTER.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        for name, value in extra_fields(record).items():
            if isinstance(value, str | int | float):
                setattr(record, name, redact_value(value))
        return True


class RedactingFormatter(logging.Formatter):
    """Formatter whose every output (message, traceback, stack) is redacted.

    Belt and braces with ``RedactingFilter``: this catches whatever a filter cannot
    see, such as text added by the format string itself.
    """

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))

    def formatException(
        self,
        ei: tuple[type[BaseException], BaseException, types.TracebackType | None] | tuple[None, None, None],
    ) -> str:
        return redact(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return redact(super().formatStack(stack_info))
