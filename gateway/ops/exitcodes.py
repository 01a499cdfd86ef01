"""How ``russak run`` (the daemon) ends: one named exit code per kind of reason.

The numbers follow BSD ``sysexits.h`` where one fits, so they mean something to
systemd and to anyone reading ``systemctl status`` ("status=78/CONFIG"). The unit
file names the codes that a restart cannot cure in ``RestartPreventExitStatus=``
(``RESTART_PREVENTED``): a wrong configuration or key file is reported once and the
service stays down until someone fixes it, instead of restarting every 10 s for
ever. Everything else (a database that is not up yet, another instance still
holding the SQLite lease, a bug) is worth a restart.

One-shot commands keep the CLI's 0/1/2 (``gateway.cli``); these codes are the
daemon's. ``exit_code_for`` maps what ``russak run`` caught to its code, so the CLI
and the tests share one table.
"""

from __future__ import annotations

from dataclasses import dataclass

from alembic.util import CommandError
from sqlalchemy.exc import OperationalError

from gateway.config import ConfigError
from gateway.ops.leases import AlreadyRunning
from gateway.privacy import KeyFileError

__all__ = [
    "EXIT_ALREADY_RUNNING",
    "EXIT_CODES",
    "EXIT_CONFIG",
    "EXIT_KEY",
    "EXIT_OK",
    "EXIT_SCHEMA",
    "EXIT_SOFTWARE",
    "EXIT_UNAVAILABLE",
    "RESTART_PREVENTED",
    "ExitCode",
    "exit_code_for",
]

EXIT_OK = 0  # stopped on SIGTERM/SIGINT after finishing the step in hand
EXIT_SCHEMA = 65  # EX_DATAERR: the database schema cannot be brought to this code's revision
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: the database cannot be reached at start
EXIT_SOFTWARE = 70  # EX_SOFTWARE: an unexpected error (a bug); the traceback is in the journal
EXIT_ALREADY_RUNNING = 75  # EX_TEMPFAIL: another gateway holds this SQLite database
EXIT_KEY = 77  # EX_NOPERM: key file missing, unreadable, too open, or not this database's
EXIT_CONFIG = 78  # EX_CONFIG: the configuration file is missing or invalid


@dataclass(frozen=True)
class ExitCode:
    code: int
    name: str
    meaning: str
    restart: bool  # does systemd's Restart=on-failure try again?


EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(EXIT_OK, "OK", "stopped cleanly (SIGTERM or SIGINT)", False),
    ExitCode(
        EXIT_SCHEMA,
        "SCHEMA",
        "the database schema could not be migrated (e.g. it is newer than this version)",
        False,
    ),
    ExitCode(EXIT_UNAVAILABLE, "UNAVAILABLE", "the database could not be opened or reached", True),
    ExitCode(EXIT_SOFTWARE, "SOFTWARE", "unexpected error; traceback in the journal", True),
    ExitCode(
        EXIT_ALREADY_RUNNING,
        "ALREADY_RUNNING",
        "another gateway is running on this SQLite database",
        True,
    ),
    ExitCode(EXIT_KEY, "KEY", "key file missing, unreadable, too open, or from another database", False),
    ExitCode(EXIT_CONFIG, "CONFIG", "configuration file missing or invalid", False),
)

RESTART_PREVENTED: tuple[int, ...] = tuple(e.code for e in EXIT_CODES if e.code and not e.restart)


def exit_code_for(exc: BaseException) -> int:
    """The exit code for what stopped ``russak run``.

    ``ConfigError`` about the key file (``open_gateway`` names ``gateway.key_file``,
    or the cause is a ``KeyFileError``) is ``EXIT_KEY``; any other ``ConfigError``
    is ``EXIT_CONFIG``; ``AlreadyRunning`` is ``EXIT_ALREADY_RUNNING``; a database
    that cannot be connected is ``EXIT_UNAVAILABLE``; a failed migration is
    ``EXIT_SCHEMA``; anything else ``EXIT_SOFTWARE``.
    """
    if isinstance(exc, AlreadyRunning):
        return EXIT_ALREADY_RUNNING
    if isinstance(exc, KeyFileError):
        return EXIT_KEY
    if isinstance(exc, ConfigError):
        if isinstance(exc.__cause__, KeyFileError) or ": gateway.key_file:" in str(exc):
            return EXIT_KEY
        return EXIT_CONFIG
    if isinstance(exc, CommandError):
        return EXIT_SCHEMA
    if isinstance(exc, OperationalError):
        return EXIT_UNAVAILABLE
    return EXIT_SOFTWARE
