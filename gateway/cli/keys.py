"""``russak key``: rotate the key file, re-encrypt what is stored under older keys."""

from __future__ import annotations

from pathlib import Path

import click

from gateway.cli import Context, UsageFailure, guarded, pass_ctx


@click.group()
def key() -> None:
    """The key file: rotate it, re-encrypt stored data."""


@key.command(name="rotate")
@click.option(
    "--key-file",
    "key_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The key file to rotate, when gateway.key_file names a read-only systemd credential copy.",
)
@pass_ctx
@guarded
def key_rotate(ctx: Context, key_file: Path | None) -> None:
    """Put a new key first in the key file.

    Old keys keep decrypting. Restart the daemon afterwards, then run key
    reencrypt. Under systemd, rotate the source file the credential is loaded from
    (--key-file /etc/russak-gateway/russak.key), not the copy under %d/.
    """
    from gateway.privacy import KeyFileError, rotate_key_file

    settings = ctx.settings()
    path = key_file or settings.resolve_path(settings.gateway.key_file)
    try:
        rotate_key_file(path)
    except KeyFileError as exc:
        raise UsageFailure(str(exc)) from exc
    click.echo(f"added a new key to {path}; restart the daemon, then run: russak key reencrypt")


@key.command(name="reencrypt")
@pass_ctx
@guarded
def key_reencrypt(ctx: Context) -> None:
    """Rewrite every stored personal field under the newest key.

    Also re-keys the identity-number hash. Restartable; afterwards only the first
    line of the key file is needed.
    """
    from gateway.rekey import reencrypt

    gw = ctx.gateway()
    try:
        count = reencrypt(gw)
    finally:
        gw.close()
    click.echo(f"re-encrypted {count} value(s) under the newest key")
