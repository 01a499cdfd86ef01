"""Builders for test data: orders, staff mails and configurations.

Every identity number is synthetic (month + 80), made by
``synthetic_identity_number``; nothing here could name a real person.
"""

from __future__ import annotations

from pathlib import Path

from gateway.samples import (  # re-exported: tests and the demo share one builder
    KOMMUNE,
    POLICE_ORG,
    POLICE_SENDER,
    STAFF,
    UNIT_ORG,
    fnr,
    mail,
    order_xml,
)

__all__ = [
    "KOMMUNE",
    "OTHER_KOMMUNE",
    "OTHER_STAFF",
    "POLICE_ORG",
    "POLICE_SENDER",
    "STAFF",
    "UNIT_ORG",
    "fnr",
    "mail",
    "order_xml",
    "write_config",
]


OTHER_STAFF = "ola.nabo@nabodal.kommune.example"
OTHER_KOMMUNE = "4602"
OTHER_UNIT_ORG = "974760673"

_SECOND_UNIT = f"""
[[units]]
code = "nabodal"
name = "Rådgivende enhet for russaker Nabodal"
org_number = "{OTHER_UNIT_ORG}"
kommunenummer = ["{OTHER_KOMMUNE}"]
staff = ["{OTHER_STAFF}"]
contact_name = "Nils Nabo"

[[units.police]]
name = "Testdal politidistrikt"
org_number = "{POLICE_ORG}"
notice_channel = "spool"
notice_address = "patale.testdal@example.org"
sender_addresses = ["@politiet.no"]
"""


def write_config(
    directory: Path,
    *,
    database: str | None = None,
    notice_policy: str = "confirm",
    auto_days: int = 3,
    extra_gateway: str = "",
    second_unit: bool = False,
) -> Path:
    """A complete configuration on the spool channel, in ``directory``.

    ``second_unit`` adds unit "nabodal" (kommunenummer 4602, staff OTHER_STAFF)
    served by the same police district, for tests across units.
    """
    from gateway.privacy import generate_key_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "spool").mkdir(exist_ok=True)
    key = directory / "russak.key"
    if not key.exists():
        generate_key_file(key)
    db = database or "sqlite:///russak.db"
    config = directory / "russak.toml"
    config.write_text(
        f"""
[gateway]
database = "{db}"
key_file = "russak.key"
staff_channel = "spool"
poll_interval_seconds = 0.2
tick_interval_seconds = 0.2
backoff_base_seconds = 1
backoff_cap_seconds = 10
lease_seconds = 5
{extra_gateway}

[[units]]
code = "testdal"
name = "Rådgivende enhet for russaker Testdal"
org_number = "{UNIT_ORG}"
kommunenummer = ["{KOMMUNE}"]
staff = ["{STAFF}"]
contact_name = "Kari Kontakt"
contact_phone = "+47 55 00 00 00"
notice_policy = "{notice_policy}"
auto_notice_after_working_days = {auto_days}

[[units.police]]
name = "Testdal politidistrikt"
org_number = "{POLICE_ORG}"
notice_channel = "spool"
notice_address = "patale.testdal@example.org"
sender_addresses = ["@politiet.no"]

{_SECOND_UNIT if second_unit else ""}
[[channels]]
name = "spool"
type = "spool"
path = "spool"
settle_seconds = 0  # tests drop files atomically (drop_file), so no settle time is needed
sender_address = "russak-gateway@kommune.example"
""",
        encoding="utf-8",
    )
    return config
