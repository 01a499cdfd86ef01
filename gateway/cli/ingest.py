"""``russak ingest``: files through intake, as the spool channel would hand them over."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Literal

import click

from gateway.cli import Context, Failure, guarded, pass_ctx


@click.command()
@click.argument(
    "files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path)
)
@pass_ctx
@guarded
def ingest(ctx: Context, files: tuple[Path, ...]) -> None:
    """Feed *.xml / *.eml files through intake.

    Each file is judged as if it came in on a channel named cli: one line per file
    with what became of it. Exit 1 if any was quarantined or could not be taken in.
    """
    from gateway.intake import pipeline as intake
    from gateway.ports import RawMessage

    gw = ctx.gateway()
    failed = 0
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
            failed += result.outcome in ("quarantined", "error")
            click.echo(f"{path.name}: {result.describe()}")
    finally:
        gw.close()
    if failed:
        raise Failure(f"{failed} of {len(files)} file(s) quarantined or not taken in")
