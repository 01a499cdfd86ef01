"""``russak cases``, ``case show``, ``record`` and ``register``: cases from the shell.

The list is operator English with the raw status codes. A case sheet and a
command's confirmation are the staff's Norwegian (the same text a STATUS reply
carries), so there the status is the Norwegian word. JSON always has the codes.
"""

from __future__ import annotations

import sys
from datetime import date
from typing import TYPE_CHECKING, Any

import click

from gateway.cli import Context, UsageFailure, guarded, pass_ctx
from gateway.cli.output import dump, instants_in_oslo, operator
from gateway.domain.facts import STATUS_WORDS, Status

if TYPE_CHECKING:
    from sqlalchemy import Select

EVENTS = ("summoned", "attended", "no-show", "test-taken", "test-missed", "send-notice", "close")
REACTIONS = ("betinget_patalaunnlatelse", "betinget_dom", "ungdomsstraff", "ungdomsoppfolging", "annen")


def stdin_is_terminal() -> bool:
    """Whether a person can be asked (a seam: the tests cannot give CliRunner a terminal)."""
    return sys.stdin.isatty()


def status_word(code: str) -> str:
    """The Norwegian word for a status code (the code itself if it is unknown)."""
    try:
        return STATUS_WORDS[Status(code)]
    except ValueError:
        return code


# The columns of a ``cases`` row: none of them personal, so a listing decrypts nothing.
SUMMARY_COLUMNS = (
    "id",
    "number",
    "status",
    "order_id",
    "case_reference",
    "minor",
    "attendance_deadline",
    "condition_end",
    "first_meeting_target",
    "required_attendances",
    "attendances",
    "notice_state",
    "created_at",
)


def case_summary(case: Any) -> dict[str, Any]:
    """One row of ``cases`` (a row of ``SUMMARY_COLUMNS`` and ``unit_code``): no personal data."""
    return {
        "id": case.id,
        "number": case.number,
        "unit": case.unit_code,
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


# The columns of a line of the plain listing (the JSON has all of ``SUMMARY_COLUMNS``).
LINE_COLUMNS = ("number", "status", "attendance_deadline", "condition_end", "case_reference")


def summary_query(status: str | None, columns: tuple[str, ...] = SUMMARY_COLUMNS) -> Select[Any]:
    """The listing's one SELECT: ``columns`` of each case and its unit's code, by id.

    Built on the mapped tables themselves (the one schema, its column types included)
    and read as rows: a flat listing needs no ORM identity map, so SQLAlchemy never
    configures the mappers and their relationships (about 40 ms of a short command).
    ``gateway.cli.quick`` holds this query's SQLite compilation for ``LINE_COLUMNS``.
    """
    from sqlalchemy import select

    from gateway.models import Case, Unit

    table, units = Case.__table__, Unit.__table__
    query = (
        select(*(table.c[name] for name in columns), units.c.code.label("unit_code"))
        .join_from(table, units)
        .order_by(table.c.id)
    )
    if status:
        query = query.where(table.c.status == status)
    return query


def listing_line(number: str, status: str, unit: str, deadline: date | None, reference: str | None) -> str:
    """One line of ``russak cases``: the same from the ORM path and from the quick one."""
    shown = deadline.isoformat() if deadline else "-"
    return f"{number:<15} {status:<19} unit={unit:<10} deadline={shown}  ref={reference or '-'}"


@click.command()
@click.option("--status", type=click.Choice([s.value for s in Status]), help="Only cases in this state.")
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@pass_ctx
@guarded
def cases(ctx: Context, status: str | None, as_json: bool) -> None:
    """List cases (no personal data).

    One line per case: number, status code, unit, the next deadline (attendance
    deadline, else the end of the condition period) and the police case reference.
    """
    if not as_json:
        from gateway.cli import quick

        lines = quick.case_lines(ctx.settings(), status)
        if lines is not None:
            _echo_lines([listing_line(*line) for line in lines])
            return
    gw = ctx.reader()
    try:
        with gw.session() as session:
            rows = [case_summary(c) for c in session.execute(summary_query(status))]
    finally:
        gw.close()
    if as_json:
        dump(rows)
        return
    _echo_lines(
        [listing_line(r["number"], r["status"], r["unit"], r["deadline"], r["case_reference"]) for r in rows]
    )


def _echo_lines(lines: list[str]) -> None:
    click.echo("\n".join(lines) if lines else "no cases")


@click.group()
def case() -> None:
    """One case: case show ID."""


def _booked(data: Any) -> Any:
    """A meeting with no outcome yet is ``booked`` in JSON (the sheet says "avtalt")."""
    if isinstance(data, list):
        return [_booked(v) for v in data]
    if not isinstance(data, dict):
        return data
    out = {k: _booked(v) for k, v in data.items()}
    if "outcome" in out and "starts_at" in out and out["outcome"] is None:
        out["outcome"] = "booked"
    return out


@case.command(name="show")
@click.argument("case_id")
@click.option("--json", "as_json", is_flag=True, help="Print the case sheet as JSON.")
@click.option("--reveal", is_flag=True, help="Also show the identity number (writes an audit entry).")
@pass_ctx
@guarded
def case_show(ctx: Context, case_id: str, as_json: bool, reveal: bool) -> None:
    """Show a case sheet, by number (RUS-2026-0001) or id.

    The sheet staff get in a STATUS reply, in Norwegian: names and contact
    details, never the identity number unless --reveal is given, which writes an
    audit entry. With --json the same facts as codes and ISO dates.
    """
    from gateway import cases as svc
    from gateway.staff.sheet import render_sheet, sheet_data

    gw = ctx.reader()  # reads, and writes at most an audit entry: nothing to wire
    try:
        with gw.session() as session:
            c = svc.get_case(session, case_id)
            revealed: dict[str, Any] = {}
            if reveal:
                from gateway.intake.letters import suggestions_of

                revealed["national_id"] = c.person.national_id if c.person else None
                if c.status == "needs_registration":
                    revealed["suggested_national_ids"] = list(suggestions_of(c).get("national_ids", []))
                svc.audit(gw, session, operator(), "revealed_identity", c, "case show --reveal")
            if as_json:
                data = {"id": c.id, **_booked(instants_in_oslo(sheet_data(c, gw=gw))), **revealed}
            else:
                text = render_sheet(c, names="full", gw=gw, signature=False)
    finally:
        gw.close()
    if as_json:
        dump(data)
        return
    click.echo(text.rstrip("\n"))
    if reveal:
        click.echo(f"Fødselsnummer: {revealed['national_id'] or '–'}")
        for number in revealed.get("suggested_national_ids", []):
            click.echo(f"Fødselsnummer funnet i brevet: {number}")


@click.command()
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
    """Record an event on a case.

    The staff e-mail commands from the shell: summoned needs --date (the meeting),
    test-taken and test-missed need --date, close needs --reason. Prints the same
    Norwegian confirmation staff get by mail, and the case's new status.
    """
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
                operator(),
            )
            status, number = c.status, c.number
    finally:
        gw.close()
    click.echo(f"{number}: {message} Status: {status_word(status)}.")


@click.command()
@click.argument("case_id")
@click.option(
    "--national-id",
    default=None,
    help="The identity number from the letter. Omit it on a terminal to be asked (hidden input).",
)
@click.option("--first-name", required=True)
@click.option("--last-name", required=True)
@click.option("--case-reference", required=True, help="The police case reference (saksnummer).")
@click.option("--condition-end", required=True, help="End of the condition period (prøvetid).")
@click.option("--police-org-number", default=None, help="The police district that sent the letter.")
@click.option("--reaction", type=click.Choice(REACTIONS))
@click.option("--attendance-deadline", default=None)
@click.option("--attendances", default=1, show_default=True, type=click.IntRange(1, 20))
@click.option("--tests", default=0, show_default=True, type=click.IntRange(0, 100))
@pass_ctx
@guarded
def register(
    ctx: Context,
    case_id: str,
    national_id: str | None,
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
    """Complete a case that came as a letter.

    For a case in needs_registration: the person and the order's terms, read from
    the police letter. Without --national-id the identity number is asked for with
    hidden input when stdin is a terminal; without a terminal the option is needed.
    """
    from gateway import cases as svc
    from gateway.clock import local_today
    from gateway.domain.dates import DateParseError, parse_staff_date

    if national_id is None:
        if not stdin_is_terminal():
            raise UsageFailure("register needs --national-id: there is no terminal to ask for it on")
        national_id = str(click.prompt("Identity number (fødselsnummer)", hide_input=True))
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
            registration = svc.Registration(
                national_id=national_id.strip(),
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
            svc.register(gw, session, c, registration, operator())
            number, status = c.number, c.status
    finally:
        gw.close()
    click.echo(f"{number}: registered; status {status}")
