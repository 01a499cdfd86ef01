"""``russak purge``: personal data out once the retention time has passed."""

from __future__ import annotations

import click

from gateway.cli import Context, guarded, pass_ctx
from gateway.cli.output import dump


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be purged.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
@guarded
def purge(ctx: Context, dry_run: bool, as_json: bool) -> None:
    """Remove personal data past the retention time.

    Cases ended (or past their condition period) more than gateway.retention_days
    ago, old quarantine entries and stored originals; statistics and the audit log
    stay. The daemon does this daily; --dry-run lists the case numbers only.
    """
    from gateway.cases import retention

    gw = ctx.gateway()
    try:
        report = retention.purge(gw, dry_run=dry_run)
    finally:
        gw.close()
    if as_json:
        dump(
            {
                "dry_run": dry_run,
                "cases": list(report.cases),
                "quarantine": report.quarantine,
                "inbound": report.inbound,
                "outbox": report.outbox,
                "parked": report.parked,
                "channel_files": report.channel_files,
            }
        )
        return
    verb = "would purge" if dry_run else "purged"
    click.echo(
        f"{verb} {len(report.cases)} case(s){': ' + ', '.join(report.cases) if report.cases else ''}; "
        f"{report.quarantine} quarantine entr{'y' if report.quarantine == 1 else 'ies'}"
    )
