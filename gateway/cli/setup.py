"""``russak init``, ``migrate`` and ``doctor``: setting up, and checking the set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from gateway.cli import Context, Failure, guarded, pass_ctx
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
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@pass_ctx
@guarded
def migrate(ctx: Context, as_json: bool) -> None:
    """Create or upgrade the database schema.

    Says which revision the database had and which it has now, or that it was
    already current. Stop every daemon first when upgrading.
    """
    from gateway import db
    from gateway.ops.status import schema_revisions

    settings = ctx.settings()
    engine = db.make_engine(settings.database_url())
    try:
        before, _ = schema_revisions(engine)
    finally:
        engine.dispose()
    gw = ctx.gateway(migrate=True)
    try:
        after, head = schema_revisions(gw.engine)
    finally:
        gw.close()
    migrated = before != after
    if as_json:
        dump({"migrated": migrated, "from": before, "to": after, "head": head})
    elif migrated:
        click.echo(f"database schema migrated from {before or 'empty'} to {after}")
    else:
        click.echo(f"database schema already current ({after})")


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
