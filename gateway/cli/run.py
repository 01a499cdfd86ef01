"""``russak run`` (the daemon, or one cycle with ``--once``) and ``russak demo``."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

import click

from gateway.cli import Context, Failure, UsageFailure, guarded, pass_ctx
from gateway.cli.output import dump


@click.command()
@click.option("--once", is_flag=True, help="One full cycle (poll every channel, tick, dispatch), then exit.")
@click.option("--json", "as_json", is_flag=True, help="With --once: print the cycle's report as JSON.")
@pass_ctx
def run(ctx: Context, once: bool, as_json: bool) -> None:
    """Run the daemon, or one full cycle with --once.

    The daemon logs at gateway.log_level (or --log-level), stops cleanly on SIGTERM
    and re-reads the configuration on SIGHUP. If it cannot start or stops on an
    error it ends with its own exit code (78 configuration, 77 key file, 65
    schema, 75 another gateway running, 69 database unreachable, 70 a bug), so
    systemd does not restart what a restart cannot cure. With --once it prints
    what the cycle did and exits 1 if the cycle quarantined input, could not take
    an input in, or made a dead letter; 2 on a configuration problem.
    """
    ctx.daemon = True
    if once:
        _once(ctx, as_json)
    elif as_json:
        raise UsageFailure("--json needs --once (the daemon itself only logs)")
    else:
        _daemon(ctx)


def _daemon(ctx: Context) -> None:
    """The long-running process; whatever stops it maps to ``gateway.ops.exitcodes``."""
    from gateway.ops import daemon, exitcodes

    try:
        _no_upgrade_under_a_live_gateway(ctx)
        gw = ctx.gateway(migrate=True)
        try:
            daemon.Daemon(gw).run()
        finally:
            gw.close()
    except Exception as exc:
        code = exitcodes.exit_code_for(exc)
        if code == exitcodes.EXIT_SOFTWARE:
            logging.getLogger("gateway.cli").exception("russak-gateway stopped by an unexpected error")
        click.echo(f"russak: {' '.join(str(exc).split()) or type(exc).__name__}", err=True)
        raise SystemExit(code) from exc


def _no_upgrade_under_a_live_gateway(ctx: Context) -> None:
    """Refuse to start a newer version on a database an older, running gateway uses.

    ``run`` migrates before it takes its instance lease (the lease lives in the
    schema). Without this check a second ``run`` of a newer version would upgrade
    the schema under the running daemon and only then find it running.
    """
    from gateway import db
    from gateway.cli.setup import live_holder
    from gateway.ops.leases import AlreadyRunning

    engine = db.make_engine(ctx.settings().database_url())
    try:
        revision = db.schema_revision(engine)
        if revision is None or revision == db.SCHEMA_HEAD:
            return
        holder = live_holder(ctx, engine)
    finally:
        engine.dispose()
    if holder is not None:
        raise AlreadyRunning(
            f"{holder}, on schema {revision}; stop every gateway before starting this version, "
            "which upgrades the schema (see the ops guide, 'Upgrade and rollback')"
        )


@guarded
def _once(ctx: Context, as_json: bool) -> None:
    from gateway.ops import daemon

    try:
        _no_upgrade_under_a_live_gateway(ctx)
    except daemon.AlreadyRunning as exc:
        raise Failure(str(exc)) from exc
    gw = ctx.gateway(migrate=True)
    try:
        daemon.acquire_instance_lease(gw)
        try:
            report = daemon.cycle(gw)
        finally:
            daemon.release_instance_lease(gw)
    except daemon.AlreadyRunning as exc:
        raise Failure(str(exc)) from exc
    finally:
        gw.close()
    outcomes = Counter(report.outcomes)
    summary: dict[str, Any] = {
        "taken": dict(report.taken),
        "outcomes": dict(outcomes),
        "reminders": report.reminders,
        "sent": report.dispatched.sent,
        "retrying": report.dispatched.retried,
        "dead": report.dispatched.dead,
        "cancelled": report.dispatched.cancelled,
    }
    if as_json:
        dump(summary)
    else:
        taken = ", ".join(f"{k}: {v}" for k, v in report.taken.items()) or "no channels"
        judged = ", ".join(f"{n} {o}" for o, n in sorted(outcomes.items()))
        sent = report.dispatched
        click.echo(
            f"taken in ({taken}{'; ' + judged if judged else ''}); reminders {report.reminders}; "
            f"sent {sent.sent}, retrying {sent.retried}, dead {sent.dead}"
        )
    wrong = [
        f"{n} {what}"
        for n, what in (
            (outcomes["quarantined"], "input(s) quarantined"),
            (outcomes["error"], "input(s) not taken in"),
            (report.dispatched.dead, "dead letter(s) made"),
        )
        if n
    ]
    if wrong:
        raise Failure("the cycle left " + ", ".join(wrong))


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="Work in this directory and keep it.",
)
@pass_ctx
@guarded
def demo(ctx: Context, keep: Path | None) -> None:
    """Simulated months of case life on synthetic data.

    Sets up a gateway in a temporary folder (or --keep DIR), drops sample orders,
    staff commands and a hostile file into its spool, and runs the real daemon
    cycle once per simulated morning, in a few seconds. All data is synthetic.
    """
    from gateway.ops.demo import run_demo

    ctx.configure_logging()
    try:
        run_demo(keep)
    except click.UsageError as exc:
        raise UsageFailure(exc.format_message()) from exc
    except Failure:
        raise
    except click.ClickException as exc:
        raise Failure(exc.format_message()) from exc
