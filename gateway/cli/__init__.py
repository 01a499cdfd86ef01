"""The ``russak`` command: the group, what every command shares, and a lazy loader.

Each command group lives in its own module (``setup``, ``status``, ``run``,
``ingest``, ``cases``, ``queues``, ``purge``, ``keys``) and imports only what it
uses. This module imports none of them and nothing heavy (no SQLAlchemy, no
pydantic): ``COMMANDS`` names each command's module and its one-line help, so
``russak --help`` is answered without loading a single command, and ``russak
cases`` loads only ``gateway.cli.cases`` (click's documented LazyGroup pattern).

Exit codes, the same for every command (``EXIT_CODES`` is the table ``--help``
shows):

- 0 ok;
- 1 refused or degraded: the request was refused (no such case, an event the case's
  state does not allow, another gateway running) or the answer is "not healthy"
  (``doctor`` found problems, ``status`` is degraded, input was quarantined, a
  dead letter was made);
- 2 configuration or usage: a bad or missing configuration file, key file or
  schema, an unknown option, a missing argument, an unreadable date.

The daemon (``russak run`` without ``--once``) is the one exception: what stops it
is mapped by ``gateway.ops.exitcodes`` to the sysexits-style codes the systemd unit
names in ``RestartPreventExitStatus=`` (78 configuration, 77 key, 65 schema, ...).

Each refusal is one line on stderr starting ``russak:``. No command prints an
identity number unless ``case show --reveal`` is given, and that writes an audit
entry.
"""

from __future__ import annotations

import functools
import importlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

if TYPE_CHECKING:
    from gateway.config import Settings
    from gateway.context import Gateway
    from gateway.ports import Clock

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2

EXIT_CODES = """\
Exit codes (every command):

\b
  0  ok
  1  refused or degraded: refused by the case's state, no such case,
     another gateway running, doctor found a problem, status degraded,
     input quarantined, a dead letter made
  2  configuration or usage: config, key file or schema problem,
     bad option or argument

The daemon (run without --once) ends with its own codes for systemd:
78 configuration, 77 key file, 65 schema, 75 another gateway running,
69 database unreachable, 70 unexpected error."""

# name -> ("module:attribute", the one line `russak --help` shows). The line is the
# first line of the command's docstring; tests/test_cli_lazy.py keeps them equal.
COMMANDS: dict[str, tuple[str, str]] = {
    "init": ("gateway.cli.setup:init", "Write a working setup in a folder (never overwrites)."),
    "migrate": ("gateway.cli.setup:migrate", "Create or upgrade the database schema."),
    "doctor": ("gateway.cli.setup:doctor", "Check the setup is fit for production."),
    "status": ("gateway.cli.status:status", "Health now: polls, backlog, dead letters, daemon."),
    "run": ("gateway.cli.run:run", "Run the daemon, or one full cycle with --once."),
    "demo": ("gateway.cli.run:demo", "Simulated months of case life on synthetic data."),
    "ingest": ("gateway.cli.ingest:ingest", "Feed *.xml / *.eml files through intake."),
    "cases": ("gateway.cli.cases:cases", "List cases (no personal data)."),
    "case": ("gateway.cli.cases:case", "One case: case show ID."),
    "record": ("gateway.cli.cases:record", "Record an event on a case."),
    "register": ("gateway.cli.cases:register", "Complete a case that came as a letter."),
    "outbox": ("gateway.cli.queues:outbox", "Outbound messages; retry or dismiss dead letters."),
    "quarantine": ("gateway.cli.queues:quarantine", "Quarantined input; export or retry one."),
    "purge": ("gateway.cli.purge:purge", "Remove personal data past the retention time."),
    "key": ("gateway.cli.keys:key", "The key file: rotate it, re-encrypt stored data."),
}


class Failure(click.ClickException):
    """Refused or degraded (exit 1), shown as one line ``russak: ...`` on stderr."""

    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"russak: {self.format_message()}", err=True)


class UsageFailure(Failure):
    """A configuration or usage problem (exit 2)."""

    exit_code = EXIT_USAGE


def guarded(func: F) -> F:
    """Turn known errors into one-line messages with the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (click.ClickException, click.Abort):
            raise
        except Exception as exc:
            # Imported only on the way out, so a command pays for no module it did not use.
            from gateway.config import ConfigError
            from gateway.domain.identifiers import InvalidIdentityNumber
            from gateway.domain.lifecycle import TransitionError

            if isinstance(exc, ConfigError):
                raise UsageFailure(str(exc).replace("\n", "; ")) from exc
            if isinstance(exc, (TransitionError, InvalidIdentityNumber)):
                raise Failure(str(exc)) from exc
            if isinstance(exc, LookupError):
                from gateway.cases.records import CaseNotFound

                if isinstance(exc, CaseNotFound):
                    raise Failure(f"no such case: {exc}") from exc
            from sqlalchemy.exc import OperationalError

            if isinstance(exc, OperationalError):
                raise Failure(_database_trouble(exc)) from exc
            from alembic.util import CommandError

            if isinstance(exc, CommandError):
                raise UsageFailure(str(exc)) from exc  # e.g. a database newer than this version
            raise

    return wrapper  # type: ignore[return-value]


def _database_trouble(exc: BaseException) -> str:
    """One line for a database that cannot be used, instead of a traceback."""
    from gateway import db

    if db.is_storage_full(exc):
        return "storage full: the database cannot be written; free space on its volume and try again"
    if db.is_read_only(exc):
        return (
            "the database cannot be written (read-only file, folder or file system); "
            "check the owner and mode of the database file and its folder"
        )
    return f"the database cannot be used ({type(exc).__name__}); see the log with --log-level debug"


def _config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("RUSSAK_CONFIG")
    return Path(env) if env else Path("russak.toml")


class Context:
    """What every command needs: the configuration path, the log level and the clock.

    ``clock`` is the system clock in production; tests and tools that drive the CLI
    in-process pass their own (``main(obj=clock)``), so nothing a command does depends
    on the day the test happens to run.

    Log lines go to stderr from ``--log-level`` up; without it a one-shot command
    logs warnings and errors only, and the daemon (``run``, which sets ``daemon``)
    logs at the configured ``gateway.log_level``.
    """

    def __init__(self, config: str | None, log_level: str | None, clock: Clock | None = None) -> None:
        self.config_path = _config_path(config)
        self.log_level = log_level
        self.clock = clock
        self.daemon = False
        self._settings: Settings | None = None

    def configure_logging(self, configured: str | None = None) -> None:
        from gateway.privacy import configure_logging

        configure_logging(self.log_level or (configured if self.daemon else None) or "WARNING")

    def settings(self) -> Settings:
        if self._settings is None:
            from gateway.config import load_settings

            settings = load_settings(self.config_path)
            _check_channel_types(settings)
            self._settings = settings
            self.configure_logging(settings.gateway.log_level)
        return self._settings

    def gateway(self, *, migrate: bool = False) -> Gateway:
        """The wired Gateway, for a command that changes cases, takes input or sends."""
        from gateway.app import open_gateway

        return open_gateway(self.settings(), clock=self.clock, migrate=migrate)

    def reader(self) -> Gateway:
        """The Gateway for a command that only reads (a listing, a case sheet, status).

        The same database, key file and key check as ``gateway()``, but nothing wired:
        intake, staff, the outbox and the case services stay unimported, which is most
        of what such a command used to spend. An effect emitted through it raises
        ``UnhandledEffect`` rather than being lost.
        """
        from gateway.context import open_context

        return open_context(self.settings(), clock=self.clock)


def _check_channel_types(settings: Settings) -> None:
    """An unknown channel ``type`` is a typo in the file: exit 2 from every command.

    The registry finds it only when it builds the channel, which a listing never does.
    """
    from gateway.config import ConfigError
    from gateway.registry import CONNECTORS

    for entry in settings.channels:
        if entry.type not in CONNECTORS:
            known = ", ".join(sorted(CONNECTORS))
            raise ConfigError(
                f"{settings.source}: channels.{entry.name}.type: unknown type {entry.type!r} (known: {known})"
            )


pass_ctx = click.make_pass_decorator(Context)


class LazyGroup(click.Group):
    """A group whose commands are imported only when one is run (or its help asked).

    ``lazy`` maps a command name to ``("module:attribute", one-line help)``. The
    group's own help lists the names with that line, so it loads nothing.
    """

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*self.lazy, *(name for name in super().list_commands(ctx) if name not in self.lazy)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.lazy:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = self.lazy[cmd_name][0].partition(":")
        command = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{module_name}:{attribute} is not a click command")
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_line) for name, (_, help_line) in self.lazy.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    lazy=COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog=EXIT_CODES,
)
@click.option(
    "--config",
    "config",
    metavar="FILE",
    help="Configuration file (default: $RUSSAK_CONFIG or ./russak.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="Log to stderr from this level up (default: WARNING; run: gateway.log_level).",
)
@click.version_option(package_name="russak-gateway")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str | None) -> None:
    """russak-gateway: police orders in, reminders and notices out."""
    os.umask(0o077)  # every file this tool makes (database, exports) is for its owner only
    injected = ctx.obj if callable(getattr(ctx.obj, "now", None)) else None
    ctx.obj = Context(config, log_level.upper() if log_level else None, clock=injected)


if __name__ == "__main__":
    main()
