"""``russak init``, ``migrate`` and ``doctor``: setting up, and checking the set-up."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from gateway.cli import Context, Failure, UsageFailure, guarded, pass_ctx
from gateway.cli.output import dump, when


@click.command()
@click.option("--dir", "directory", required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--org-number", default=None, help="The unit's organisation number (9 digits).")
@click.option("--kommunenummer", "kommunenummer", multiple=True, help="A municipality served (repeatable).")
@click.option("--name", default=None, help="The unit's name.")
@click.option("--staff", "staff", multiple=True, help="A staff e-mail address (repeatable).")
@pass_ctx
@guarded
def init(
    ctx: Context,
    directory: Path,
    org_number: str | None,
    kommunenummer: tuple[str, ...],
    name: str | None,
    staff: tuple[str, ...],
) -> None:
    """Write a working setup in a folder (never overwrites).

    Writes russak.toml (mode 0640), a new key file (mode 0600), the spool folders
    and the SQLite database in DIR. What exists is kept, and options that would have
    changed a kept russak.toml are named as not applied. The file holds example
    values until you edit it; russak doctor names each one.
    """
    from gateway.ops.setup import initialise

    ctx.configure_logging()
    made = initialise(
        directory,
        org_number=org_number,
        kommunenummer=list(kommunenummer),
        name=name,
        staff=list(staff),
    )
    for line in made:
        click.echo(line)


@click.command()
@click.option("--to", "target", metavar="REVISION", help="Go up or down to this revision (default: head).")
@click.option(
    "--show", is_flag=True, help="Print the database's and this version's revision; change nothing."
)
@click.option("--yes", is_flag=True, help="Carry out a downgrade (it drops what the newer revisions added).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
@guarded
def migrate(ctx: Context, target: str | None, show: bool, yes: bool, as_json: bool) -> None:
    """Create or upgrade the database schema.

    Says which revision the database had and which it has now, or that it was
    already current. --to REVISION goes up or down to that revision: a downgrade
    prints what it undoes and loses, and is carried out only with --yes. --show
    prints the database's revision and this version's, and changes nothing. Any
    change is refused (exit 1) while a gateway holds the database: stop every
    daemon first. A revision this version does not know, or a database newer than
    this version, exits 2.
    """
    from gateway import db

    engine = db.make_engine(ctx.settings().database_url())
    try:
        if show:
            _show_revisions(db.current_revision(engine), as_json)
            return
        try:
            plan = db.plan_migration(engine, target or "head")
        except db.SchemaError as exc:
            raise UsageFailure(str(exc)) from exc
        if plan.direction != "none":
            _refuse_while_held(ctx, engine)
        undone = [
            {"revision": r.id, "doc": r.doc, "loses": db.DOWNGRADE_LOSES[r.id]}
            for r in plan.steps
            if plan.direction == "downgrade"
        ]
        report: dict[str, Any] = {"migrated": plan.direction != "none", "from": plan.current}
        report |= {"to": plan.target, "head": plan.head, "direction": plan.direction, "undone": undone}
        if plan.direction == "downgrade":
            _confirm_downgrade(plan, report, as_json, yes)
        if plan.target != plan.head:
            db.migrate_to(engine, plan.target)
    finally:
        engine.dispose()
    if plan.target == plan.head:
        ctx.gateway(migrate=True).close()  # upgrades, and checks the key file belongs to the database
    if as_json:
        dump(report)
    elif plan.direction == "downgrade":
        click.echo(f"database schema downgraded from {plan.current} to {plan.target}")
    elif plan.direction == "upgrade":
        click.echo(f"database schema migrated from {plan.current or 'empty'} to {plan.target}")
    elif plan.target == plan.head:
        click.echo(f"database schema already current ({plan.target})")
    else:
        click.echo(f"database schema already at {plan.target} (this version's head: {plan.head})")


def _refuse_while_held(ctx: Context, engine: Any) -> None:
    """Exit 1 while a live gateway holds a lease on the database (its instance or a poll)."""
    holder = live_holder(ctx, engine)
    if holder is not None:
        raise Failure(f"{holder}; stop every daemon first (systemctl stop russak-gateway)")


def live_holder(ctx: Context, engine: Any) -> str | None:
    """Which live gateway holds a lease on the database, in words; None if none does."""
    from gateway import db
    from gateway.clock import SystemClock
    from gateway.context import host_name
    from gateway.ops.status import owner_alive

    this_process = f"{host_name()}:{os.getpid()}:"  # a run of this very process, not a daemon
    for lease in db.leases_held(engine, (ctx.clock or SystemClock()).now()):
        if owner_alive(lease.owner) and not lease.owner.startswith(this_process):
            until = when(lease.until)
            return f"a gateway holds this database ({lease.name} lease of {lease.owner}, until {until})"
    return None


def _confirm_downgrade(plan: Any, report: dict[str, Any], as_json: bool, yes: bool) -> None:
    """Say what the downgrade undoes and loses; without --yes, change nothing (exit 1)."""
    if not as_json:
        click.echo(f"database schema {plan.current}; downgrading to {plan.target} undoes:")
        for step in report["undone"]:
            click.echo(f"  {step['revision']}  {step['doc']}\n        loses: {step['loses']}")
    if yes:
        return
    if as_json:
        dump(report | {"migrated": False, "to": plan.current})
    raise Failure(
        f"downgrade from {plan.current} to {plan.target} not done: back up the database, "
        "then run again with --yes"
    )


def _show_revisions(current: str | None, as_json: bool) -> None:
    from gateway import db

    revisions = db.known_revisions()
    ids = [r.id for r in revisions]
    applied = ids[: ids.index(current) + 1] if current in ids else []
    if as_json:
        dump(
            {
                "current": current,
                "head": ids[-1],
                "known": current is None or current in ids,
                "revisions": [
                    {"revision": r.id, "doc": r.doc, "applied": r.id in applied} for r in revisions
                ],
            }
        )
        return
    if current is None:
        state = "none (no schema yet: russak migrate creates it)"
    elif current not in ids:
        state = f"{current} (newer than this version: run the version that wrote it)"
    else:
        state = current + (" (current)" if current == ids[-1] else " (older: russak migrate upgrades it)")
    click.echo(f"database schema: {state}")
    click.echo(f"this version's schema (head): {ids[-1]}")
    for r in revisions:
        click.echo(f"  {r.id}  {'applied' if r.id in applied else 'not applied':<11}  {r.doc}")


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
@pass_ctx
@guarded
def doctor(ctx: Context, as_json: bool) -> None:
    """Check the setup is fit for production.

    Loads the configuration and the key, checks the schema, builds every channel
    and checks its folders, and refuses example values left from russak init, a
    unit without a contact line and folders this process cannot write. Warns about
    a police sender list that accepts a whole domain. Also says whether a daemon
    is running and when each channel was last polled. Exit 1 on any failure or a
    dead letter, 2 on a configuration, key or schema problem; it never polls or
    sends.
    """
    from gateway.ops import status as health
    from gateway.ops.setup import production_findings

    settings = ctx.settings()
    findings = production_findings(settings)
    gw = ctx.reader()
    try:
        channels = [(entry, health.channel_problems(gw, entry)) for entry in settings.channels]
        facts = health.gather(gw)
        database = gw.engine.url.render_as_string(hide_password=True)
    finally:
        gw.close()
    failures = sum(f.fatal for f in findings) + sum(bool(p) for _, p in channels) + bool(facts.dead_letters)
    report: dict[str, Any] = {
        "ok": failures == 0,
        "config": {
            "path": str(settings.source),
            "units": len(settings.units),
            "channels": len(settings.channels),
        },
        "database": {"url": database, "revision": facts.schema_revision, "head": facts.schema_head},
        "channels": [
            {
                "name": entry.name,
                "type": entry.type,
                "problems": problems,
                "last_poll_at": next(c.last_poll_at for c in facts.channels if c.name == entry.name),
            }
            for entry, problems in channels
        ],
        "daemon": {
            "running": facts.daemon.running,
            "owner": facts.daemon.owner,
            "lease_until": facts.daemon.lease_until,
        },
        "outbox": {"pending": facts.outbox_pending, "dead": facts.dead_letters},
        "quarantine": {"open": facts.quarantine_open},
        "findings": [
            {"level": "fail" if f.fatal else "warning", "where": f.where, "text": f.text} for f in findings
        ],
    }
    if as_json:
        dump(report)
    else:
        _print_doctor(report, facts)
    if failures:
        raise Failure(f"{failures} problem(s) found")


def _print_doctor(report: dict[str, Any], facts: Any) -> None:
    config, database = report["config"], report["database"]
    click.echo(f"config: {config['path']} ok ({config['units']} unit(s), {config['channels']} channel(s))")
    for finding in report["findings"]:
        label = "FAILED" if finding["level"] == "fail" else "WARNING"
        click.echo(f"  {label} {finding['where']}: {finding['text']}")
    click.echo(f"database: {database['url']} schema {database['revision']} (current)")
    for channel in report["channels"]:
        state = "ok" if not channel["problems"] else "FAILED " + "; ".join(channel["problems"])
        polled = (
            f"last poll started {when(channel['last_poll_at'])} (from the poll lease; no poll record yet)"
            if channel["last_poll_at"]
            else "never polled"
        )
        click.echo(f"channel {channel['name']} ({channel['type']}): {state}; {polled}")
    daemon = facts.daemon
    if daemon.running:
        click.echo(f"daemon: running ({daemon.owner}, lease until {when(daemon.lease_until)})")
    elif daemon.owner and daemon.lease_until and daemon.lease_until > facts.now:
        click.echo(f"daemon: not running (lease held by {daemon.owner}, whose process is gone)")
    elif daemon.owner:
        click.echo(f"daemon: not running (last lease {daemon.owner}, expired {when(daemon.lease_until)})")
    else:
        click.echo("daemon: not running")
    click.echo(f"outbox: {facts.outbox_pending} pending, {facts.dead_letters} dead; ", nl=False)
    click.echo(f"quarantine: {facts.quarantine_open}")
