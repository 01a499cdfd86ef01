"""``russak init``: a working embedded-default setup in one directory.

It writes ``russak.toml`` (one unit, the spool folder as the only channel), a fresh
encryption key with mode 0600, the spool folders, and the SQLite database made by
migrating. It never overwrites: run twice, it keeps what is there and says so, so a
key (without which the data cannot be read) is never replaced by accident.
"""

from __future__ import annotations

import os
from pathlib import Path

from gateway import db
from gateway.config import ConfigError, load_settings
from gateway.domain.identifiers import is_valid_org_number
from gateway.privacy import generate_key_file, install_cipher, load_key_file

EXAMPLE_ORG = "937000006"  # matches schemas/examples; replace with the unit's own
EXAMPLE_POLICE_ORG = "921000006"  # the police district in schemas/examples

TEMPLATE = """\
# russak-gateway: embedded default (SQLite + spool folder). Edit, then `russak doctor`.
# Reference: docs/configuration.md

[gateway]
database = "sqlite:///russak.db"
key_file = "russak.key"          # or "%d/russak.key" with systemd LoadCredential
staff_channel = "spool"          # where staff alerts and digests go
poll_interval_seconds = 60
tick_interval_seconds = 60
digest_time = "07:30"
retention_days = 90
first_meeting_target_working_days = 10

[[units]]
code = "enhet"
name = "{name}"
org_number = "{org}"
kommunenummer = [{kommuner}]
staff = [{staff}]
notice_policy = "confirm"        # or "auto": send after auto_notice_after_working_days

[[units.police]]
name = "Testdal politidistrikt (eksempel)"
org_number = "{police_org}"
notice_channel = "spool"         # notices are written to spool/outbox/
sender_addresses = ["@politiet.no"]

[[channels]]
name = "spool"
type = "spool"
path = "spool"                   # inbox/ in, outbox/ notices out, mail/ staff mail out
sender_address = "russak-gateway@kommune.example"
"""


def _quote(values: list[str]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def initialise(
    directory: Path,
    *,
    org_number: str | None = None,
    kommunenummer: list[str] | None = None,
    name: str | None = None,
    staff: list[str] | None = None,
) -> list[str]:
    """Create what is missing in ``directory``; return one line per thing made or kept."""
    org = (org_number or EXAMPLE_ORG).replace(" ", "")
    if not is_valid_org_number(org):
        raise ConfigError(f"--org-number {org}: not a valid organisation number (mod-11 check)")
    kommuner = kommunenummer or ["4601"]
    for k in kommuner:
        if len(k) != 4 or not k.isdigit():
            raise ConfigError(f"--kommunenummer {k}: must be 4 digits")
    made: list[str] = []
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = directory / "russak.toml"
    if config.exists():
        made.append(f"kept   {config} (exists)")
    else:
        text = TEMPLATE.format(
            name=name or "Rådgivende enhet for russaker",
            org=org,
            kommuner=_quote(kommuner),
            staff=_quote(staff or ["saksbehandler@kommune.example"]),
            police_org=EXAMPLE_POLICE_ORG,
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        made.append(f"wrote  {config}")
    key = directory / "russak.key"
    if key.exists():
        made.append(f"kept   {key} (exists; never overwritten)")
    else:
        generate_key_file(key)
        made.append(f"wrote  {key} (mode 0600; back it up: without it the data cannot be read)")
    for sub in ("inbox", "outbox", "mail"):
        (directory / "spool" / sub).mkdir(parents=True, exist_ok=True, mode=0o700)
    made.append(f"ready  {directory / 'spool'}/{{inbox,outbox,mail}}")
    settings = load_settings(config)
    install_cipher(load_key_file(settings.resolve_path(settings.gateway.key_file)))
    engine = db.make_engine(settings.database_url())
    try:
        db.migrate(engine)
    finally:
        engine.dispose()
    made.append(f"ready  {settings.database_url()} (schema migrated)")
    made.append(
        f"next:  russak --config {config} run   "
        f"(drop *.xml or *.eml orders in {directory / 'spool' / 'inbox'})"
    )
    return made
