"""``russak outbox`` and ``russak quarantine``: what waits to go out, what could not come in."""

from __future__ import annotations

import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import click

from gateway.cli import Context, Failure, guarded, pass_ctx
from gateway.cli.output import dump, operator, when

# outbox ---------------------------------------------------------------------------------

# The outbox columns a listing shows: the payload (encrypted, personal) is not one.
LISTED = (
    "id",
    "kind",
    "status",
    "attempts",
    "channel",
    "key",
    "created_at",
    "next_attempt_at",
    "sent_at",
    "last_error",
    "receipt",
)


@click.group(invoke_without_command=True)
@click.option(
    "--status", type=click.Choice(["pending", "sent", "dead", "cancelled"]), help="Only this state."
)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@guarded
def outbox(click_ctx: click.Context, status: str | None, as_json: bool) -> None:
    """Outbound messages; retry or dismiss dead letters.

    Without a subcommand: one line per message with its kind, state, case and
    attempts (and the last error). A dead staff mail can be sent again with
    outbox retry ID, or marked as handled with outbox dismiss ID.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from gateway.models import Case, OutboxItem

    # Read through the mapped tables (no mapper configuration), and never the payload:
    # a listing decrypts nothing.
    items, cases = OutboxItem.__table__.c, Case.__table__.c
    ctx: Context = click_ctx.obj
    gw = ctx.reader()
    try:
        with gw.session() as session:
            query = (
                select(*(items[name] for name in LISTED), cases.number.label("case_number"))
                .outerjoin_from(OutboxItem.__table__, Case.__table__, cases.id == items.case_id)
                .order_by(items.id)
            )
            if status:
                query = query.where(items.status == status)
            rows: list[dict[str, Any]] = [
                {
                    "id": item.id,
                    "kind": item.kind,
                    "status": item.status,
                    "case": item.case_number,
                    "attempts": item.attempts,
                    "channel": item.channel,
                    "key": item.key,
                    "created_at": item.created_at,
                    "next_attempt_at": item.next_attempt_at if item.status == "pending" else None,
                    "sent_at": item.sent_at,
                    "last_error": item.last_error,
                    "receipt": item.receipt,
                }
                for item in session.execute(query)
            ]
    finally:
        gw.close()
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo("outbox is empty")
    for r in rows:
        moment = r["sent_at"] if r["status"] == "sent" else r["next_attempt_at"] or r["created_at"]
        extra = f" error={r['last_error']}" if r["last_error"] else ""
        click.echo(
            f"{r['id']:>5} {r['kind']:<7} {r['status']:<9} {when(moment)} case={r['case'] or '-':<14} "
            f"attempts={r['attempts']}{extra}"
        )


@outbox.command(name="retry")
@click.argument("item_id", type=int)
@pass_ctx
@guarded
def outbox_retry(ctx: Context, item_id: int) -> None:
    """Send a dead staff mail again, with a fresh retry window.

    A dead notice is back in draft instead: staff confirm it again with SEND VARSEL
    (or russak record ID send-notice).
    """
    _revive(ctx, item_id, dismiss=False)


@outbox.command(name="dismiss")
@click.argument("item_id", type=int)
@pass_ctx
@guarded
def outbox_dismiss(ctx: Context, item_id: int) -> None:
    """Mark a dead letter as handled (it stays listed as cancelled)."""
    _revive(ctx, item_id, dismiss=True)


def _revive(ctx: Context, item_id: int, *, dismiss: bool) -> None:
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
            action = "outbox_dismissed" if dismiss else "outbox_retried"
            audit(gw, session, operator(), action, None, f"outbox {item_id}")
    finally:
        gw.close()
    click.echo(f"outbox {item_id}: {'dismissed' if dismiss else 'queued again'}")


# quarantine -----------------------------------------------------------------------------


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Print the list as JSON.")
@click.pass_context
@guarded
def quarantine(click_ctx: click.Context, as_json: bool) -> None:
    """Quarantined input; export or retry one.

    Without a subcommand: the open entries with id, arrival time (Oslo), channel
    and reason. quarantine export ID FILE writes one original out (audited);
    quarantine retry ID runs it through intake again after the cause is fixed.
    """
    if click_ctx.invoked_subcommand is not None:
        return
    from sqlalchemy import select

    from gateway.models import QuarantineEntry

    entries = QuarantineEntry.__table__.c  # the mapped table: no mapper configuration
    ctx: Context = click_ctx.obj
    gw = ctx.reader()
    try:
        with gw.session() as session:
            rows: list[dict[str, Any]] = [
                {"id": q.id, "channel": q.channel, "reason": q.reason, "received_at": q.received_at}
                for q in session.execute(
                    select(entries.id, entries.channel, entries.reason, entries.received_at)
                    .where(entries.released_at.is_(None))
                    .order_by(entries.id)
                )
            ]
    finally:
        gw.close()
    if as_json:
        dump(rows)
        return
    if not rows:
        click.echo("quarantine is empty")
    for r in rows:
        click.echo(f"{r['id']:>5} {when(r['received_at'])} {r['channel']:<10} {r['reason']}")


@quarantine.command(name="export")
@click.argument("entry_id", type=int)
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@pass_ctx
@guarded
def quarantine_export(ctx: Context, entry_id: int, out: Path) -> None:
    """Write the original of an entry to OUT (mode 0600; audited).

    Refuses to overwrite. The file holds personal data: delete it after use.
    """
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
            audit(gw, session, operator(), "quarantine_exported", None, f"entry {entry_id}")
    except FileExistsError as exc:
        raise Failure(f"{out} exists; not overwriting") from exc
    finally:
        gw.close()
    click.echo(f"wrote {out} ({out.stat().st_size} bytes)")


@quarantine.command(name="retry")
@click.argument("entry_id", type=int)
@pass_ctx
@guarded
def quarantine_retry(ctx: Context, entry_id: int) -> None:
    """Run an entry through intake again, after fixing the cause.

    On success the entry is released (audited). If the message is quarantined
    again, a new entry with the new reason is made, the old one stays, and the
    exit code is 1, as for ingest.
    """
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
        failed = result.outcome in ("quarantined", "error")
        if not failed:
            with gw.session() as session:
                session.get_one(QuarantineEntry, entry_id).released_at = gw.clock.now()
                audit(gw, session, operator(), "quarantine_released", None, f"entry {entry_id}")
    finally:
        gw.close()
    click.echo(f"entry {entry_id}: {result.describe()}")
    if failed:
        raise Failure(f"entry {entry_id} was not taken in; it stays in quarantine")
