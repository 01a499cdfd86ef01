"""The ``russak`` command.

Exit codes: 0 success; 2 usage or configuration error; 1 any other failure. Each
failure prints one line on stderr that says why. No command prints an identity
number unless ``case show --reveal`` is given, and that writes an audit entry.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sys
import uuid
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from sqlalchemy import select

from gateway.app import open_gateway
from gateway.config import ConfigError, Settings, load_settings
from gateway.context import Gateway
from gateway.domain.identifiers import InvalidIdentityNumber
from gateway.domain.lifecycle import Status, TransitionError
from gateway.ports import Clock
from gateway.privacy import configure_logging

log = logging.getLogger("gateway.cli")

F = TypeVar("F", bound=Callable[..., Any])

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Failure(click.ClickException):
    exit_code = EXIT_FAILURE

    def show(self, file: Any = None) -> None:
        click.echo(f"russak: {self.format_message()}", err=True)


class UsageFailure(Failure):
    exit_code = EXIT_USAGE


def _config_path(explicit: str | None) -> Path:
    if explicit:
        return Path(explicit)
    env = os.environ.get("RUSSAK_CONFIG")
    return Path(env) if env else Path("russak.toml")


def guarded(func: F) -> F:
    """Turn known errors into one-line messages with the documented exit codes."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ConfigError as exc:
            raise UsageFailure(str(exc).replace("\n", "; ")) from exc
        except (TransitionError, InvalidIdentityNumber) as exc:
            raise Failure(str(exc)) from exc
        except LookupError as exc:
            raise Failure(f"no such case: {exc}") from exc

    return wrapper  # type: ignore[return-value]


class Context:
    """What every command needs: the configuration path, the log level and the clock.

    ``clock`` is the system clock in production; tests and tools that drive the CLI
    in-process pass their own (``main(obj=clock)``), so nothing a command does depends
    on the day the test happens to run.
    """

    def __init__(self, config: str | None, log_level: str | None, clock: Clock | None = None) -> None:
        self.config_path = _config_path(config)
        self.log_level = log_level
        self.clock = clock
        self._settings: Settings | None = None

    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings(self.config_path)
            configure_logging(self.log_level or self._settings.gateway.log_level)
        return self._settings

    def gateway(self, *, migrate: bool = False) -> Gateway:
        return open_gateway(self.settings(), clock=self.clock, migrate=migrate)


pass_ctx = click.make_pass_decorator(Context)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config",
    metavar="FILE",
    help="Configuration file (default: $RUSSAK_CONFIG or ./russak.toml).",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"]),
    help="Override gateway.log_level.",
)
@click.version_option(package_name="russak-gateway")
@click.pass_context
def main(ctx: click.Context, config: str | None, log_level: str | None) -> None:
    """russak-gateway: police orders in, reminders and notices out."""
    os.umask(0o077)  # every file this tool makes (database, exports) is for its owner only
    ctx.obj = Context(config, log_level, clock=ctx.obj if isinstance(ctx.obj, Clock) else None)


# init / migrate / run / demo --------------------------------------------------------------


@main.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--org-number", default=None, help="The unit's organisation number (9 digits).")
@click.option("--kommunenummer", "kommunenummer", multiple=True, help="A municipality served (repeatable).")
@click.option("--name", default=None, help="The unit's name.")
@click.option("--staff", "staff", multiple=True, help="Staff e-mail address (repeatable).")
@guarded
def init(
    directory: Path,
    org_number: str | None,
    kommunenummer: tuple[str, ...],
    name: str | None,
    staff: tuple[str, ...],
) -> None:
    """Write a working embedded-default setup in DIR (config, key, SQLite, spool)."""
    from gateway.ops.setup import initialise

    made = initialise(
        directory,
        org_number=org_number,
        kommunenummer=list(kommunenummer),
        name=name,
        staff=list(staff),
    )
    for line in made:
        click.echo(line)


@main.command()
@pass_ctx
@guarded
def migrate(ctx: Context) -> None:
    """Create or upgrade the database schema."""
    gw = ctx.gateway(migrate=True)
    gw.close()
    click.echo("database schema is current")


@main.command()
@click.option("--once", is_flag=True, help="One full cycle (poll every channel, tick, dispatch), then exit.")
@pass_ctx
@guarded
def run(ctx: Context, once: bool) -> None:
    """Run the gateway daemon."""
    from gateway.ops import daemon

    gw = ctx.gateway(migrate=True)
    try:
        if once:
            daemon.acquire_instance_lease(gw)
            try:
                report = daemon.cycle(gw)
            finally:
                daemon.release_instance_lease(gw)
            taken = ", ".join(f"{k}: {v}" for k, v in report.taken.items()) or "no channels"
            click.echo(
                f"taken in ({taken}); reminders {report.reminders}; sent {report.dispatched.sent}, "
                f"retrying {report.dispatched.retried}, dead {report.dispatched.dead}"
            )
            return
        daemon.Daemon(gw).run()
    except daemon.AlreadyRunning as exc:
        raise Failure(str(exc)) from exc
    finally:
        gw.close()


@main.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work in this directory and keep it.",
)
@guarded
def demo(keep: Path | None) -> None:
    """Months of case life on sample orders, with a simulated clock, in seconds."""
    from gateway.ops.demo import run_demo

    run_demo(keep)


# ingest ------------------------------------------------------------------------------------


@main.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_ctx
@guarded
def ingest(ctx: Context, files: tuple[Path, ...]) -> None:
    """Feed files (*.xml, *.eml) through intake as the spool channel would."""
    import hashlib

    from gateway.intake import pipeline as intake
    from gateway.ports import RawMessage

    gw = ctx.gateway()
    failed = False
    try:
        for path in files:
            data = path.read_bytes()
            kind: Literal["xml", "email"] = "email" if path.suffix.lower() == ".eml" else "xml"
            message = RawMessage(
                channel="cli",
                external_id="sha256:" + hashlib.sha256(data).hexdigest(),
                content=data,
                kind=kind,
                received_at=gw.clock.now(),
                metadata={"filename": path.name},
            )
            result = intake.process(gw, message)
            failed |= result.outcome in ("quarantined", "error")
            click.echo(f"{path.name}: {result.describe()}")
    finally:
        gw.close()
    if failed:
        sys.exit(EXIT_FAILURE)


# cases ------------------------------------------------------------------------------------


def _json_default(value: object) -> str:
    if isinstance(value, (date, datetime)):
        return value.isoformat()
    raise TypeError(type(value).__name__)


def _dump(data: object) -> None:
    click.echo(json.dumps(data, default=_json_default, ensure_ascii=False, indent=2))


def case_summary(case: Any) -> dict[str, Any]:
    return {
        "id": case.id,
        "number": case.number,
        "unit": case.unit.code,
        "status": case.status,
        "order_id": case.order_id,
        "case_reference": case.case_reference,
        "minor": case.minor,
        "deadline": case.attendance_deadline or case.condition_end,
        "attendance_deadline": case.attendance_deadline,
        "condition_end": case.condition_end,
        "first_meeting_target": case.first_meeting_target,
        "required_attendances": case.required_attendances,
        "attendances": case.attendances,
        "notice": case.notice_state,
        "created_at": case.created_at,
    }


@main.command(name="cases")
@click.option("--status", type=click.Choice([s.value for s in Status]))
@click.option("--json", "as_json", is_flag=True)
@pass_ctx
@guarded
def cases_cmd(ctx: Context, status: str | None, as_json: bool) -> None:
    """List cases (no personal data)."""
    from gateway.models import Case

    gw = ctx.gateway()
    with gw.session() as session:
        query = select(Case).order_by(Case.id)
        if status:
            query = query.where(Case.status == status)
        rows = [case_summary(c) for c in session.scalars(query)]
    gw.close()
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo("no cases")
    for r in rows:
        click.echo(
            f"{r['number']:<15} {r['status']:<19} unit={r['unit']:<10} "
            f"deadline={r['deadline'] or '-'}  ref={r['case_reference'] or '-'}"
        )


@main.group()
def case() -> None:
    """One case."""


@case.command(name="show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True)
@click.option("--reveal", is_flag=True, help="Also show the identity number (writes an audit entry).")
@pass_ctx
@guarded
def case_show(ctx: Context, case_id: str, as_json: bool, reveal: bool) -> None:
    """Show a case sheet (the identity number only with --reveal)."""
    from gateway import cases as svc
    from gateway.intake.letters import suggestions_of
    from gateway.staff.sheet import case_sheet

    gw = ctx.gateway()
    with gw.session() as session:
        c = svc.get_case(session, case_id)
        data = case_summary(c)
        sheet = case_sheet(c)
        data.update(
            name=sheet.name,
            guardians=sheet.guardians,
            reaction=c.reaction,
            meetings=[{"date": d, "time": t, "outcome": o} for d, t, o in sheet.meetings],
            tests=[{"date": d, "taken": taken} for d, taken in sheet.tests],
            notices=[{"message_id": m, "status": s} for m, s in sheet.notices],
            summonses=[{"sent_on": s.sent_on, "channel": s.channel} for s in c.summonses],
        )
        if c.status == "needs_registration":
            suggestions = suggestions_of(c)
            if not reveal:
                suggestions["national_ids"] = [f"{n[:6]}*****" for n in suggestions.get("national_ids", [])]
            data["suggestions"] = suggestions
        if reveal:
            data["national_id"] = c.person.national_id if c.person else None
            svc.audit(gw, session, f"cli:{_operator()}", "revealed_identity", c, "case show --reveal")
    gw.close()
    if as_json:
        _dump(data)
        return
    for key, value in data.items():
        click.echo(f"{key:>22}: {value if value not in (None, []) else '-'}")


def _operator() -> str:
    try:
        return os.getlogin()
    except OSError:
        return str(os.getuid())


EVENTS = ("summoned", "attended", "no-show", "test-taken", "test-missed", "send-notice", "close")


@main.command()
@click.argument("case_id")
@click.argument("event", type=click.Choice(EVENTS))
@click.option("--date", "on", help="Date (2026-12-03, 3.12.2026 or 03.12); default today.")
@click.option("--time", "at", help="Meeting time, e.g. 10:00 (summoned).")
@click.option("--place", help="Meeting place or mode (summoned).")
@click.option("--reason", help="Reason (close).")
@pass_ctx
@guarded
def record(
    ctx: Context,
    case_id: str,
    event: str,
    on: str | None,
    at: str | None,
    place: str | None,
    reason: str | None,
) -> None:
    """Record an event on a case."""
    from gateway import cases as svc
    from gateway.clock import local_today
    from gateway.domain.dates import DateParseError, parse_staff_date, parse_staff_time
    from gateway.staff.commands import Command, perform

    gw = ctx.gateway()
    try:
        today = local_today(gw.clock.now())
        try:
            when = parse_staff_date(on, today) if on else None
            clock_time = parse_staff_time(at) if at else None
        except DateParseError as exc:
            raise UsageFailure(str(exc)) from exc
        if event == "summoned" and when is None:
            raise UsageFailure("summoned needs --date (the meeting date)")
        if event in ("test-taken", "test-missed") and when is None:
            raise UsageFailure(f"{event} needs --date")
        if event == "close" and not reason:
            raise UsageFailure("close needs --reason")
        with gw.session() as session:
            c = svc.get_case(session, case_id)
            message = perform(
                gw,
                session,
                c,
                Command(event, on=when, at=clock_time, place=place, reason=reason),
                f"cli:{_operator()}",
            )
            status = c.status
            number = c.number
    finally:
        gw.close()
    click.echo(f"{number}: {message} Status: {status}")


@main.command()
@click.argument("case_id")
@click.option(
    "--national-id",
    required=True,
    prompt=True,
    hide_input=True,
    help="Read from the letter; prompted if omitted.",
)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option("--case-reference", required=True)
@click.option("--condition-end", required=True, help="End of the condition period (prøvetid).")
@click.option("--police-org-number", default=None)
@click.option(
    "--reaction",
    type=click.Choice(
        ["betinget_patalaunnlatelse", "betinget_dom", "ungdomsstraff", "ungdomsoppfolging", "annen"]
    ),
)
@click.option("--attendance-deadline", default=None)
@click.option("--attendances", default=1, show_default=True, type=click.IntRange(1, 20))
@click.option("--tests", default=0, show_default=True, type=click.IntRange(0, 100))
@pass_ctx
@guarded
def register(
    ctx: Context,
    case_id: str,
    national_id: str,
    first_name: str,
    last_name: str,
    case_reference: str,
    condition_end: str,
    police_org_number: str | None,
    reaction: str | None,
    attendance_deadline: str | None,
    attendances: int,
    tests: int,
) -> None:
    """Complete a case that came as a letter (needs_registration)."""
    from gateway import cases as svc
    from gateway.clock import local_today
    from gateway.domain.dates import DateParseError, parse_staff_date

    gw = ctx.gateway()
    try:
        today = local_today(gw.clock.now())
        try:
            end = parse_staff_date(condition_end, today)
            deadline = parse_staff_date(attendance_deadline, today) if attendance_deadline else None
        except DateParseError as exc:
            raise UsageFailure(str(exc)) from exc
        with gw.session() as session:
            c = svc.get_case(session, case_id)
            reg = svc.Registration(
                national_id=national_id,
                first_name=first_name,
                last_name=last_name,
                case_reference=case_reference,
                condition_end=end,
                sender_org_number=police_org_number,
                reaction=reaction,
                attendance_deadline=deadline,
                required_attendances=attendances,
                tests_required=tests,
            )
            svc.register(gw, session, c, reg, f"cli:{_operator()}")
            number, status = c.number, c.status
    finally:
        gw.close()
    click.echo(f"{number}: registered. Status: {status}")


# outbox / quarantine / purge / doctor ----------------------------------------------------------


@main.group(name="outbox", invoke_without_command=True)
@click.option("--status", type=click.Choice(["pending", "sent", "dead", "cancelled"]))
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guarded
def outbox_cmd(click_ctx: click.Context, status: str | None, as_json: bool) -> None:
    """List outbound messages (``outbox retry ID`` / ``outbox dismiss ID`` for dead letters)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from gateway.models import Case, OutboxItem

    ctx: Context = click_ctx.obj
    gw = ctx.gateway()
    with gw.session() as session:
        query = (
            select(OutboxItem, Case.number)
            .outerjoin(Case, Case.id == OutboxItem.case_id)
            .order_by(OutboxItem.id)
        )
        if status:
            query = query.where(OutboxItem.status == status)
        rows = [
            {
                "id": item.id,
                "kind": item.kind,
                "status": item.status,
                "case": number,
                "attempts": item.attempts,
                "channel": item.channel,
                "key": item.key,
                "created_at": item.created_at,
                "next_attempt_at": item.next_attempt_at if item.status == "pending" else None,
                "sent_at": item.sent_at,
                "last_error": item.last_error,
                "receipt": item.receipt,
            }
            for item, number in session.execute(query)
        ]
    gw.close()
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo("outbox is empty")
    for r in rows:
        extra = f" error={r['last_error']}" if r["last_error"] else ""
        click.echo(
            f"{r['id']:>5} {r['kind']:<7} {r['status']:<9} case={r['case'] or '-':<14} "
            f"attempts={r['attempts']}{extra}"
        )


@main.group(name="quarantine", invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
@guarded
def quarantine_cmd(click_ctx: click.Context, as_json: bool) -> None:
    """List quarantined messages (``quarantine export ID FILE`` to get one out)."""
    if click_ctx.invoked_subcommand is not None:
        return
    from gateway.models import QuarantineEntry

    ctx: Context = click_ctx.obj
    gw = ctx.gateway()
    with gw.session() as session:
        rows = [
            {"id": q.id, "channel": q.channel, "reason": q.reason, "received_at": q.received_at}
            for q in session.scalars(
                select(QuarantineEntry)
                .where(QuarantineEntry.released_at.is_(None))
                .order_by(QuarantineEntry.id)
            )
        ]
    gw.close()
    if as_json:
        _dump(rows)
        return
    if not rows:
        click.echo("quarantine is empty")
    for r in rows:
        click.echo(f"{r['id']:>5} {r['received_at']:%Y-%m-%d %H:%M} {r['channel']:<10} {r['reason']}")


@quarantine_cmd.command(name="export")
@click.argument("entry_id", type=int)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@guarded
def quarantine_export(ctx: Context, entry_id: int, out: Path) -> None:
    """Write the original of a quarantined message to OUT (mode 0600; audited)."""
    from gateway.cases import audit
    from gateway.models import InboundMessage, QuarantineEntry

    gw = ctx.gateway()
    try:
        with gw.session() as session:
            entry = session.get(QuarantineEntry, entry_id)
            if entry is None:
                raise Failure(f"no quarantine entry {entry_id}")
            inbound = session.get_one(InboundMessage, entry.inbound_id)
            if inbound.content is None:
                raise Failure(f"the original of entry {entry_id} was purged")
            fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(inbound.content)
            audit(gw, session, f"cli:{_operator()}", "quarantine_exported", None, f"entry {entry_id}")
    except FileExistsError as exc:
        raise Failure(f"{out} exists; not overwriting") from exc
    finally:
        gw.close()
    click.echo(f"wrote {out} ({out.stat().st_size} bytes)")


@quarantine_cmd.command(name="retry")
@click.argument("entry_id", type=int)
@pass_ctx
@guarded
def quarantine_retry(ctx: Context, entry_id: int) -> None:
    """Run a quarantined message through intake again (after fixing the cause)."""
    from gateway.cases import audit
    from gateway.intake import pipeline as intake
    from gateway.models import InboundMessage, QuarantineEntry
    from gateway.ports import RawMessage

    gw = ctx.gateway()
    try:
        with gw.session() as session:
            entry = session.get(QuarantineEntry, entry_id)
            if entry is None or entry.released_at is not None:
                raise Failure(f"no open quarantine entry {entry_id}")
            inbound = session.get_one(InboundMessage, entry.inbound_id)
            if inbound.content is None:
                raise Failure(f"the original of entry {entry_id} was purged")
            kind: Literal["xml", "email"] = "email" if inbound.kind == "email" else "xml"
            message = RawMessage(
                channel=inbound.channel,
                # A fresh id per attempt: two retries in the same second, or after the
                # clock stepped back, must not collide with each other.
                external_id=f"{inbound.external_id}#retry-q{entry_id}-{uuid.uuid4().hex}",
                content=inbound.content,
                kind=kind,
                received_at=gw.clock.now(),
            )
        result = intake.process(gw, message)
        if result.outcome not in ("quarantined", "error"):
            with gw.session() as session:
                session.get_one(QuarantineEntry, entry_id).released_at = gw.clock.now()
                audit(gw, session, f"cli:{_operator()}", "quarantine_released", None, f"entry {entry_id}")
    finally:
        gw.close()
    click.echo(f"entry {entry_id}: {result.describe()}")
    if result.outcome in ("quarantined", "error"):
        sys.exit(EXIT_FAILURE)


@outbox_cmd.command(name="retry")
@click.argument("item_id", type=int)
@pass_ctx
@guarded
def outbox_retry(ctx: Context, item_id: int) -> None:
    """Send a dead letter again (staff mail; a notice is re-sent with SEND VARSEL)."""
    _outbox_revive(ctx, item_id, dismiss=False)


@outbox_cmd.command(name="dismiss")
@click.argument("item_id", type=int)
@pass_ctx
@guarded
def outbox_dismiss(ctx: Context, item_id: int) -> None:
    """Mark a dead letter as dealt with (it stays listed as cancelled)."""
    _outbox_revive(ctx, item_id, dismiss=True)


def _outbox_revive(ctx: Context, item_id: int, *, dismiss: bool) -> None:
    from datetime import timedelta

    from gateway.cases import audit
    from gateway.models import OutboxItem

    gw = ctx.gateway()
    try:
        with gw.session() as session:
            item = session.get(OutboxItem, item_id)
            if item is None or item.status != "dead":
                raise Failure(f"outbox {item_id} is not a dead letter")
            if item.kind == "notice" and not dismiss:
                raise Failure(
                    "a dead notice is back in draft: confirm it again with SEND VARSEL / record send-notice"
                )
            now = gw.clock.now()
            if dismiss:
                item.status = "cancelled"
            else:
                item.status, item.next_attempt_at = "pending", now
                item.give_up_at = now + timedelta(hours=gw.settings.gateway.retry_for_hours)
            audit(
                gw,
                session,
                f"cli:{_operator()}",
                "outbox_dismissed" if dismiss else "outbox_retried",
                None,
                f"outbox {item_id}",
            )
    finally:
        gw.close()
    click.echo(f"outbox {item_id}: {'dismissed' if dismiss else 'queued again'}")


@main.group()
def key() -> None:
    """The encryption key file: rotate it, re-encrypt stored data."""


@key.command(name="rotate")
@pass_ctx
@guarded
def key_rotate(ctx: Context) -> None:
    """Put a new key first in the key file (old keys keep decrypting)."""
    from gateway.privacy import KeyFileError, rotate_key_file

    settings = ctx.settings()
    path = settings.resolve_path(settings.gateway.key_file)
    try:
        rotate_key_file(path)
    except KeyFileError as exc:
        raise UsageFailure(str(exc)) from exc
    click.echo(f"added a new key to {path}; restart the daemon, then run `russak key reencrypt`")


@key.command(name="reencrypt")
@pass_ctx
@guarded
def key_reencrypt(ctx: Context) -> None:
    """Rewrite every stored personal field under the newest key."""
    from gateway.rekey import reencrypt

    gw = ctx.gateway()
    try:
        count = reencrypt(gw)
    finally:
        gw.close()
    click.echo(f"re-encrypted {count} value(s) under the newest key")


@main.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be purged.")
@pass_ctx
@guarded
def purge(ctx: Context, dry_run: bool) -> None:
    """Remove personal data of cases past the retention time."""
    from gateway.cases import retention

    gw = ctx.gateway()
    try:
        report = retention.purge(gw, dry_run=dry_run)
    finally:
        gw.close()
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {len(report.cases)} case(s){': ' + ', '.join(report.cases) if report.cases else ''}; "
        f"{report.quarantine} quarantine entr{'y' if report.quarantine == 1 else 'ies'}"
    )


@main.command()
@pass_ctx
@guarded
def doctor(ctx: Context) -> None:
    """Check configuration, key, database and channels; exit 1 if anything is wrong."""
    from sqlalchemy import func

    from gateway.models import OutboxItem, QuarantineEntry

    settings = ctx.settings()
    click.echo(
        f"config: {settings.source} ok ({len(settings.units)} unit(s), {len(settings.channels)} channel(s))"
    )
    gw = ctx.gateway()
    problems = 0
    try:
        click.echo(f"database: {gw.engine.url.render_as_string(hide_password=True)} schema current")
        for entry in settings.channels:
            try:
                gw.channel(entry.name)
                click.echo(f"channel {entry.name} ({entry.type}): ok")
            except Exception as exc:
                problems += 1
                click.echo(f"channel {entry.name} ({entry.type}): FAILED {exc}")
        with gw.session() as session:
            dead = (
                session.scalar(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "dead")
                )
                or 0
            )
            pending = (
                session.scalar(
                    select(func.count()).select_from(OutboxItem).where(OutboxItem.status == "pending")
                )
                or 0
            )
            quarantined = (
                session.scalar(
                    select(func.count())
                    .select_from(QuarantineEntry)
                    .where(QuarantineEntry.released_at.is_(None))
                )
                or 0
            )
        click.echo(f"outbox: {pending} pending, {dead} dead; quarantine: {quarantined}")
        problems += 1 if dead else 0
    finally:
        gw.close()
    if problems:
        raise Failure(f"{problems} problem(s) found")


if __name__ == "__main__":
    main()
