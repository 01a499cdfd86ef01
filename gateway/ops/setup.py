"""``russak init`` and what ``russak doctor`` refuses before production.

``initialise`` writes ``russak.toml`` (one unit, the spool folder as the only
channel; mode 0640, as the ops guide says), a fresh encryption key with mode 0600,
the spool folders, and the SQLite database made by migrating. It never overwrites:
run twice, it keeps what is there and says which options it therefore did not
apply, so a key (without which the data cannot be read) is never replaced by
accident.

The file it writes works at once on the sample data, so it holds example values
(the org numbers of ``schemas/examples``, ``.example`` addresses, a police district
named "(eksempel)", the whole ``@politiet.no`` domain as letter senders, no contact
line). ``production_findings`` names each of them, and everything else that would
fail in production, so ``doctor`` refuses a setup that was never edited.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

from gateway import db
from gateway.config import ConfigError, Settings, load_settings
from gateway.domain.identifiers import is_valid_org_number
from gateway.privacy import generate_key_file, install_cipher, load_key_file

EXAMPLE_ORG = "937000006"  # matches schemas/examples; replace with the unit's own
EXAMPLE_POLICE_ORG = "921000006"  # the police district in schemas/examples
EXAMPLE_ORGS = frozenset({EXAMPLE_ORG, EXAMPLE_POLICE_ORG})
EXAMPLE_MARK = "(eksempel)"
EXAMPLE_SENDER = "@politiet.no"
EXAMPLE_STAFF = "saksbehandler@kommune.example"
CONFIG_MODE = 0o640  # docs/ops-guide.md: "russak.toml ... mode 0640"

_ADDRESS = re.compile(
    r"^[a-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$",
    re.IGNORECASE,
)
# RFC 2606 names: no real mailbox behind them.
_EXAMPLE_DOMAIN = re.compile(r"(?:^|\.)example(?:\.(?:com|net|org))?$", re.IGNORECASE)

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
name = {name}
org_number = {org}
kommunenummer = [{kommuner}]
staff = [{staff}]
# Who the police may contact about a notice: fill in at least one.
contact_name = ""
contact_phone = ""
contact_email = ""
notice_policy = "confirm"        # or "auto": send after auto_notice_after_working_days

[[units.police]]
name = "Testdal politidistrikt (eksempel)"
org_number = "{police_org}"
notice_channel = "spool"         # notices are written to spool/outbox/
sender_addresses = ["@politiet.no"]   # example: list the district's exact addresses

[[channels]]
name = "spool"
type = "spool"
path = "spool"                   # inbox/ in, outbox/ notices out, mail/ staff mail out
sender_address = "russak-gateway@kommune.example"
"""


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escaping is valid TOML for these values)."""
    return json.dumps(value, ensure_ascii=False)


def valid_address(value: str) -> bool:
    """A plain ``local@domain.tld`` address: no spaces, commas or display names."""
    return bool(_ADDRESS.fullmatch(value.strip()))


def _check_options(org: str, kommuner: list[str], staff: list[str] | None, name: str | None) -> None:
    if not is_valid_org_number(org):
        raise ConfigError(f"--org-number {org}: not a valid organisation number (mod-11 check)")
    for k in kommuner:
        if len(k) != 4 or not k.isdigit():
            raise ConfigError(f"--kommunenummer {k}: must be 4 digits")
    for address in staff or []:
        if not valid_address(address):
            raise ConfigError(
                f"--staff {address}: not an e-mail address (one address per --staff, like "
                "kari.nordmann@kommune.no)"
            )
    if name is not None and not name.strip():
        raise ConfigError("--name: must not be empty")


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
    kommuner = kommunenummer or ["4601"]
    _check_options(org, kommuner, staff, name)
    made: list[str] = []
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    config = directory / "russak.toml"
    if config.exists():
        given = [
            option
            for option, value in (
                ("--org-number", org_number),
                ("--kommunenummer", kommunenummer),
                ("--name", name),
                ("--staff", staff),
            )
            if value
        ]
        if given:
            made.append(
                f"kept   existing {config}; {', '.join(given)} "
                f"{'was' if len(given) == 1 else 'were'} not applied: edit the file"
            )
        else:
            made.append(f"kept   existing {config}")
    else:
        text = TEMPLATE.format(
            name=_toml(name.strip() if name else "Rådgivende enhet for russaker"),
            org=_toml(org),
            kommuner=", ".join(_toml(k) for k in kommuner),
            staff=", ".join(_toml(s.strip().lower()) for s in (staff or [EXAMPLE_STAFF])),
            police_org=EXAMPLE_POLICE_ORG,
        )
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_EXCL, CONFIG_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            os.fchmod(fh.fileno(), CONFIG_MODE)  # whatever the umask: the guide promises 0640
            fh.write(text)
        made.append(f"wrote  {config} (mode 0640; example values in it: edit, then russak doctor)")
    key = directory / "russak.key"
    if key.exists():
        made.append(f"kept   existing {key} (never overwritten)")
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
        f"next:  russak --config {config} doctor, then run "
        f"(drop *.xml or *.eml orders in {directory / 'spool' / 'inbox'})"
    )
    return made


# What doctor refuses -----------------------------------------------------------------


@dataclass(frozen=True)
class Finding:
    """One thing about the configuration: ``fatal`` ones make ``doctor`` exit 1."""

    fatal: bool
    where: str
    text: str

    def line(self) -> str:
        return f"{'FAILED' if self.fatal else 'WARNING'} {self.where}: {self.text}"


def example_domain(address: str) -> bool:
    domain = address.rpartition("@")[2].strip().lower()
    return bool(domain) and bool(_EXAMPLE_DOMAIN.search(domain))


def _addresses(where: str, values: list[str]) -> list[Finding]:
    return [
        Finding(True, where, f"{value} is an example address (no mailbox behind it): put in the real one")
        for value in values
        if value and example_domain(value)
    ]


def production_findings(settings: Settings) -> list[Finding]:
    """Example values left in place, and settings that would fail or leak in production."""
    found: list[Finding] = []
    for i, unit in enumerate(settings.units):
        at = f"units.{i}"
        if EXAMPLE_MARK in unit.name:
            found.append(Finding(True, f"{at}.name", f'"{unit.name}" is an example name'))
        if unit.org_number in EXAMPLE_ORGS:
            found.append(
                Finding(True, f"{at}.org_number", f"{unit.org_number} is a test value: put in the unit's own")
            )
        found += _addresses(f"{at}.staff", unit.staff)
        found += _addresses(f"{at}.contact_email", [unit.contact_email or ""])
        if not any((v or "").strip() for v in (unit.contact_name, unit.contact_phone, unit.contact_email)):
            found.append(
                Finding(
                    True,
                    at,
                    "no contact line (contact_name, contact_phone and contact_email are all empty): "
                    "a notice to the police would name no one to contact",
                )
            )
        for j, district in enumerate(unit.police):
            where = f"{at}.police.{j}"
            if EXAMPLE_MARK in district.name:
                found.append(Finding(True, f"{where}.name", f'"{district.name}" is an example name'))
            if district.org_number in EXAMPLE_ORGS:
                found.append(
                    Finding(
                        True,
                        f"{where}.org_number",
                        f"{district.org_number} is a test value: put in the police district's own",
                    )
                )
            found += _addresses(f"{where}.notice_address", [district.notice_address or ""])
            found += _senders(f"{where}.sender_addresses", district.sender_addresses)
    for k, channel in enumerate(settings.channels):
        for key, value in channel.options().items():
            if key.endswith("address") and isinstance(value, str):
                found += _addresses(f"channels.{k}.{key}", [value])
    return found


def _senders(where: str, senders: list[str]) -> list[Finding]:
    found: list[Finding] = []
    for sender in senders:
        value = sender.strip().lower()
        if value == EXAMPLE_SENDER:
            found.append(
                Finding(
                    True,
                    where,
                    f"{sender} is the example from russak init: it accepts a letter from anyone at "
                    "politiet.no as an order; list the district's exact addresses",
                )
            )
        elif example_domain(value):
            found += _addresses(where, [sender])
        elif value.startswith("@"):
            found.append(
                Finding(
                    False,
                    where,
                    f"{sender} accepts letters from anyone at {value[1:]}; exact addresses are safer",
                )
            )
    return found
