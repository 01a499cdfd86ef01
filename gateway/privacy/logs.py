"""The process's one log handler: JSON for machines, text for people, never an identity number.

Where stderr goes decides the format, when ``configure_logging`` runs:

- **the journal** (``JOURNAL_STREAM`` names stderr): one JSON object per line, each
  prefixed ``<N>`` with its syslog priority so ``journalctl -p`` filters work;
- **anything else that is not a terminal** (a pipe, a file, a container runtime):
  one JSON object per line, so a log shipper needs no parsing rules;
- **a terminal**: ``2026-12-01 22:07:49+01:00 INFO gateway.x: message [case=…]``.

JSON keys: ``time`` (ISO 8601 with offset and milliseconds), ``level``, ``logger``,
``message``, then whichever of ``LOG_FIELDS`` the call gave through ``extra=``, and
``exception`` / ``stack`` for a traceback. Times are Europe/Oslo with their offset,
like every other time the gateway shows, and unambiguous for any reader.

Every path is redacted: ``RedactingFilter`` masks the record (message, arguments,
traceback, ``extra`` fields) before formatting, and each formatter masks its output.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from datetime import datetime
from typing import Any

from gateway.clock import OSLO
from gateway.privacy.redaction import RedactingFilter, RedactingFormatter, redact, redact_value

__all__ = ["LOG_FIELDS", "JournalFormatter", "JsonFormatter", "TextFormatter", "configure_logging"]

# The structured fields operators can filter on, given as ``log.info(..., extra={...})``.
LOG_FIELDS = ("channel", "case", "outbox_id", "attempt", "duration_ms", "outcome")

_NOISY_LOGGERS = (
    "apscheduler.executors",
    "apscheduler.scheduler",
    "alembic",
    "urllib3",
    "msal",
    "exchangelib",
)
_handler: logging.Handler | None = None


def _fields(record: logging.LogRecord) -> dict[str, object]:
    return {name: redact_value(record.__dict__[name]) for name in LOG_FIELDS if name in record.__dict__}


def _message(record: logging.LogRecord) -> str:
    try:
        return redact(record.getMessage())
    except Exception:
        return redact(f"{record.msg!s} [log arguments could not be formatted]")


def _redacted_str(value: object) -> str:
    return redact(str(value))


class JsonFormatter(RedactingFormatter):
    """One JSON object per record, on one line (a traceback is escaped, not split).

    Values are redacted before they are serialised, because JSON escaping could hide
    a number from the mask; the finished line is masked once more in case anything
    slipped through.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, OSLO).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": _message(record),
            **_fields(record),
        }
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["exception"] = redact(record.exc_text)
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return redact(json.dumps(entry, ensure_ascii=False, default=_redacted_str))


def _syslog_priority(levelno: int) -> int:
    if levelno >= logging.CRITICAL:
        return 2
    if levelno >= logging.ERROR:
        return 3
    if levelno >= logging.WARNING:
        return 4
    if levelno >= logging.INFO:
        return 6
    return 7


class JournalFormatter(JsonFormatter):
    """JSON lines prefixed with ``<N>`` so journald records the syslog priority.

    journald splits a stream into one entry per line. A JSON record is one line, but
    every line gets the prefix anyway, so nothing can ever land at the default level.
    """

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{_syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in super().format(record).split("\n"))


class TextFormatter(RedactingFormatter):
    """For a person at a terminal: time with its offset, level, logger, message.

    ``extra`` fields follow the message in brackets, so a terminal shows what the JSON
    carries; a traceback follows on its own lines.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return datetime.fromtimestamp(record.created, OSLO).isoformat(sep=" ", timespec="seconds")

    def formatMessage(self, record: logging.LogRecord) -> str:
        text = super().formatMessage(record)
        fields = _fields(record)
        if fields:
            text += " [" + " ".join(f"{name}={value}" for name, value in fields.items()) + "]"
        return text


def _stderr_is_journal() -> bool:
    """True when stderr is the journal stream systemd set up (JOURNAL_STREAM=dev:ino).

    The variable is inherited by child processes whose stderr goes elsewhere, so it
    is compared with stderr itself, as systemd documents.
    """
    value = os.environ.get("JOURNAL_STREAM")
    if not value:
        return False
    try:
        device, inode = (int(part) for part in value.split(":", 1))
        info = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (info.st_dev, info.st_ino) == (device, inode)


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (ValueError, AttributeError):  # closed, or replaced by something without isatty
        return False


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stderr`` is now, not what it was at set-up, so a
    command run in-process (tests, the demo) never logs into a closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _formatter() -> logging.Formatter:
    if _stderr_is_journal():
        return JournalFormatter()
    if _stderr_is_terminal():
        return TextFormatter()
    return JsonFormatter()


def configure_logging(level: str = "INFO") -> None:
    """Install the one stderr handler, redacting, in the format that suits stderr.

    ``level`` is a level name in any case (``debug``, ``INFO``). Called once by the
    CLI entry point; calling again replaces the earlier handler and looks at stderr
    afresh.
    """
    levelno = logging.getLevelNamesMapping().get(level.strip().upper())
    if levelno is None:
        raise ValueError(f"unknown log level {level!r}")
    global _handler
    root = logging.getLogger()
    if _handler is not None:
        root.removeHandler(_handler)
    handler = _StderrHandler()
    handler.setFormatter(_formatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(levelno)
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(max(levelno, logging.WARNING))
    # "job skipped: maximum number of running instances reached" only means a step
    # was still running when its next turn came (coalesce handles it); not news at 3 a.m.
    logging.getLogger("apscheduler.scheduler").setLevel(max(levelno, logging.ERROR))
    logging.captureWarnings(True)
    _handler = handler
