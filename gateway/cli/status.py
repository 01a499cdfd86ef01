"""``russak status``: is the gateway healthy right now (exit 0) or degraded (exit 1)."""

from __future__ import annotations

import click

from gateway.cli import Context, Failure, guarded, pass_ctx
from gateway.cli.output import age, dump, when


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the facts as JSON.")
@pass_ctx
@guarded
def status(ctx: Context, as_json: bool) -> None:
    """Health now: polls, backlog, dead letters, daemon.

    Per channel when it was last polled (read from its poll lease, so it says a poll
    started, not that it succeeded) and its last delivery and delivery error; the
    outbox backlog and its oldest entry, dead letters, open quarantine, the next
    digest, the schema revision, and whether a daemon is running. Reads the
    database only. Exit 0 healthy; 1 degraded (a dead letter, quarantine, a
    backlog older than an hour, no daemon); 2 configuration error.
    """
    from gateway.ops.status import gather

    gw = ctx.reader()
    try:
        health = gather(gw)
    finally:
        gw.close()
    if as_json:
        dump(health.as_dict())
    else:
        daemon = health.daemon
        click.echo(
            f"daemon: running ({daemon.owner}, lease until {when(daemon.lease_until)})"
            if daemon.running
            else "daemon: not running"
        )
        for c in health.channels:
            parts = []
            if c.inbound:
                parts.append(
                    f"last poll started {when(c.last_poll_at)} by {c.polled_by}"
                    if c.last_poll_at
                    else "never polled"
                )
            if c.outbound:
                parts.append(f"last delivery {when(c.last_delivery_at)}")
                if c.last_error:
                    parts.append(f"last error: {c.last_error}")
            click.echo(f"channel {c.name} ({c.type}): {'; '.join(parts)}")
        oldest = health.oldest_pending_age
        click.echo(
            f"outbox: {health.outbox_pending} pending"
            + (f" (oldest {age(oldest)} old)" if oldest is not None else "")
            + f", {health.dead_letters} dead"
        )
        click.echo(f"quarantine: {health.quarantine_open} open")
        due = health.next_digest_at is not None and health.next_digest_at <= health.now
        click.echo(
            f"next digest: {when(health.next_digest_at)}{' (due: the next tick makes it)' if due else ''}"
        )
        current = (
            "current"
            if health.schema_revision == health.schema_head
            else f"code expects {health.schema_head}"
        )
        click.echo(f"schema: {health.schema_revision or 'none'} ({current})")
        click.echo(health.summary())
    if not health.healthy:
        raise Failure("degraded: " + "; ".join(health.problems))
