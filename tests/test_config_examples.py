"""The shipped example configurations load, use only what exists, and fail loudly.

Operators start from ``config/*.toml``; an example that no longer loads, or names a
connector option the code does not know, fails at 3 a.m. on someone else's server.
These tests load every example with the real loader, build every channel with the
real registry, and prove that a broken file gives an error naming the file and the
key. They also keep docs/configuration.md in step with the settings models, and
guard the docs and examples against real-looking identity numbers.
"""

from __future__ import annotations

import inspect
import re
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy.engine import make_url

from connectors.spool import SpoolChannel
from gateway.cli import main
from gateway.clock import SimulatedClock
from gateway.config import (
    ChannelSettings,
    ConfigError,
    GatewaySettings,
    PoliceDistrict,
    Settings,
    Unit,
    load_settings,
)
from gateway.db import make_engine
from gateway.domain.identifiers import is_valid_org_number
from gateway.ops.setup import initialise
from gateway.privacy import Cipher, active_cipher, install_cipher
from gateway.registry import build_channel
from tests.conftest import START

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
DOCS_DIR = ROOT / "docs"
EXAMPLES = sorted(CONFIG_DIR.glob("*.toml"))
EMBEDDED = CONFIG_DIR / "embedded.toml"
SYSTEMD_EXAMPLES = [CONFIG_DIR / "postgresql.toml", CONFIG_DIR / "intermunicipal.toml"]


def test_the_examples_are_there() -> None:
    names = {p.name for p in EXAMPLES}
    assert {"embedded.toml", "postgresql.toml", "intermunicipal.toml"} <= names


def _example_domain(address: str) -> bool:
    """Only reserved example domains in examples, so no real mailbox gets test traffic."""
    domain = address.rsplit("@", 1)[-1].lower()
    return domain == "example.org" or domain.endswith((".example", ".example.org"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_loads_and_is_consistent(path: Path) -> None:
    settings = load_settings(path)
    assert settings.source == path.resolve()
    outbound = {c.name for c in settings.channels if c.outbound}
    assert settings.gateway.staff_channel in outbound
    assert any(c.inbound for c in settings.channels), "nothing would ever come in"
    for unit in settings.units:
        assert is_valid_org_number(unit.org_number)
        assert unit.staff, f"{unit.code}: nobody may send commands"
        assert unit.police, f"{unit.code}: notices could not be routed"
        for district in unit.police:
            assert is_valid_org_number(district.org_number)
            assert district.notice_channel in outbound
            for address in [*district.sender_addresses, district.notice_address or ""]:
                assert address == "" or _example_domain(address), address
        for address in unit.staff:
            assert _example_domain(address), address


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_channels_build_with_the_real_registry(path: Path, tmp_path: Path) -> None:
    """Every channel type and option in the examples is one the code really has."""
    settings = load_settings(path)
    clock = SimulatedClock(START)
    built = []
    for entry in settings.channels:
        root = tmp_path / entry.name
        root.mkdir()
        relocated = ChannelSettings.model_validate({**entry.model_dump(), "path": str(root)})
        channel = build_channel(settings, relocated, clock)
        built.append(channel)
        assert channel.name == entry.name
        assert (root / "inbox").is_dir() and (root / "outbox").is_dir()
    assert len(built) == len(settings.channels)


@pytest.fixture
def restore_cipher() -> Iterator[None]:
    """``russak init`` installs its cipher process-wide; put back what was there."""
    try:
        previous: Cipher | None = active_cipher()
    except RuntimeError:
        previous = None
    yield
    install_cipher(previous)


def _key_paths(data: Any, prefix: str = "") -> set[str]:
    """Dotted key paths of a TOML document, list positions folded to ``[]``."""
    found: set[str] = set()
    if isinstance(data, dict):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else key
            found.add(path)
            found |= _key_paths(value, path)
    elif isinstance(data, list):
        for item in data:
            found |= _key_paths(item, f"{prefix}[]")
    return found


@pytest.mark.usefixtures("restore_cipher")
def test_embedded_example_has_everything_russak_init_writes(tmp_path: Path) -> None:
    initialise(tmp_path / "site")
    written = tomllib.loads((tmp_path / "site" / "russak.toml").read_text(encoding="utf-8"))
    example = tomllib.loads(EMBEDDED.read_text(encoding="utf-8"))
    missing = _key_paths(written) - _key_paths(example)
    assert not missing, f"embedded.toml lacks keys russak init writes: {sorted(missing)}"
    assert [c["type"] for c in example["channels"]] == [c["type"] for c in written["channels"]]
    assert example["gateway"]["database"] == written["gateway"]["database"]


@pytest.mark.parametrize("path", SYSTEMD_EXAMPLES, ids=lambda p: p.name)
def test_systemd_examples_take_the_key_from_the_credentials_directory(
    path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = load_settings(path)
    assert str(settings.gateway.key_file).startswith("%d/")
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    with pytest.raises(ConfigError) as caught:
        settings.resolve_path(settings.gateway.key_file)
    assert "CREDENTIALS_DIRECTORY" in str(caught.value)
    assert path.name in str(caught.value)
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert settings.resolve_path(settings.gateway.key_file) == tmp_path / "russak.key"


@pytest.mark.parametrize("path", SYSTEMD_EXAMPLES, ids=lambda p: p.name)
def test_systemd_examples_keep_state_in_the_state_directory(path: Path) -> None:
    """Relative paths resolve next to the config (read-only /etc under the unit)."""
    settings = load_settings(path)
    for entry in settings.channels:
        assert str(entry.options()["path"]).startswith("/var/lib/russak-gateway/")
    if settings.gateway.database.startswith("sqlite"):
        assert settings.database_url() == "sqlite:////var/lib/russak-gateway/russak.db"


def test_postgresql_example_has_no_password_and_a_working_driver() -> None:
    settings = load_settings(CONFIG_DIR / "postgresql.toml")
    url = make_url(settings.database_url())
    assert url.password is None, "passwords belong in a pgpass credential, not the file"
    assert url.query.get("sslmode") == "verify-full"
    engine = make_engine(settings.database_url())  # builds the dialect; no connection
    try:
        assert (engine.dialect.name, engine.dialect.driver) == ("postgresql", "psycopg")
    finally:
        engine.dispose()


# Broken files: the error names the file and the key -------------------------------


def _broken(tmp_path: Path, old: str, new: str, name: str = "russak.toml") -> Path:
    text = EMBEDDED.read_text(encoding="utf-8")
    assert old in text, f"test setup: {old!r} is not in embedded.toml"
    path = tmp_path / name
    path.write_text(text.replace(old, new, 1), encoding="utf-8")
    return path


def _error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    return str(caught.value)


def test_bad_org_number_names_file_and_key(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'org_number = "937000006"', 'org_number = "937000007"', "kommune.toml")
    message = _error(path)
    assert "units.0.org_number" in message
    assert "kommune.toml" in message
    assert "mod-11" in message


def test_bad_police_org_number_names_the_nested_key(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, 'org_number = "921000006"', 'org_number = "921000007"'))
    assert "units.0.police.0.org_number" in message
    assert "russak.toml" in message


def test_misspelt_key_is_refused_not_ignored(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, "retention_days = 90", "retention_dayz = 90"))
    assert "gateway.retention_dayz" in message
    assert "russak.toml" in message


def test_short_kommunenummer_names_the_key(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, 'kommunenummer = ["4601"]', 'kommunenummer = ["461"]'))
    assert "units.0.kommunenummer" in message


def test_staff_channel_must_be_outbound(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, 'staff_channel = "spool"', 'staff_channel = "epost"'))
    assert "gateway.staff_channel" in message
    assert "'epost'" in message


def test_notice_channel_must_exist(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, 'notice_channel = "spool"', 'notice_channel = "altinn"'))
    assert "notice_channel" in message
    assert "'altinn'" in message


def test_municipality_served_twice_names_both_units(tmp_path: Path) -> None:
    base = load_settings(CONFIG_DIR / "intermunicipal.toml")
    text = (CONFIG_DIR / "intermunicipal.toml").read_text(encoding="utf-8")
    old = 'kommunenummer = ["4611", "4612"]'
    assert old in text
    path = tmp_path / "interkommunal.toml"
    path.write_text(text.replace(old, 'kommunenummer = ["4611", "4602"]'), encoding="utf-8")
    message = _error(path)
    assert "kommunenummer 4602" in message
    assert base.units[0].code in message and base.units[1].code in message


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    message = _error(_broken(tmp_path, 'digest_time = "07:30"', "digest_time = 07:30 oops"))
    assert "russak.toml" in message
    assert "not valid TOML" in message


def test_cli_exits_2_with_one_line_naming_file_and_key(tmp_path: Path) -> None:
    path = _broken(tmp_path, 'org_number = "937000006"', 'org_number = "937000007"', "drift.toml")
    result = CliRunner().invoke(main, ["--config", str(path), "doctor"])
    assert result.exit_code == 2
    assert result.stderr.startswith("russak: ")
    assert "drift.toml" in result.stderr
    assert "units.0.org_number" in result.stderr
    assert result.stderr.count("\n") == 1


# Docs stay in step with the code ------------------------------------------------------


def _documented_keys() -> set[str]:
    text = (DOCS_DIR / "configuration.md").read_text(encoding="utf-8")
    return set(re.findall(r"`([a-z_]+)`", text))


@pytest.mark.parametrize(
    "model", [GatewaySettings, Unit, PoliceDistrict, ChannelSettings], ids=lambda m: m.__name__
)
def test_configuration_doc_names_every_setting(model: type[Any]) -> None:
    missing = set(model.model_fields) - _documented_keys()
    assert not missing, f"docs/configuration.md does not describe {sorted(missing)}"


def test_configuration_doc_names_every_spool_option() -> None:
    parameters = inspect.signature(SpoolChannel.__init__).parameters
    options = {n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    options = (options - {"clock"}) | {"path"}
    missing = options - _documented_keys()
    assert not missing, f"docs/configuration.md does not describe spool options {sorted(missing)}"


def test_top_level_sections_are_documented() -> None:
    sections = set(Settings.model_fields) - {"source"}
    text = (DOCS_DIR / "configuration.md").read_text(encoding="utf-8")
    for section in sections:
        assert f"[{section}]" in text or f"[[{section}]]" in text, section


def test_config_readme_lists_every_example() -> None:
    readme = (CONFIG_DIR / "README.md").read_text(encoding="utf-8")
    for path in EXAMPLES:
        assert path.name in readme, path.name


# No real-looking identity numbers anywhere we ship text --------------------------------

_ELEVEN = re.compile(r"(?<![\d-])(\d{6})[ .]?(\d{5})(?![\d-])")


def _shipped_texts() -> list[Path]:
    return sorted([*DOCS_DIR.glob("*.md"), *CONFIG_DIR.glob("*")])


def test_there_are_texts_to_check() -> None:
    names = {p.name for p in _shipped_texts()}
    assert {"ops-guide.md", "staff-guide.md", "configuration.md", "architecture.md"} <= names


@pytest.mark.parametrize("path", _shipped_texts(), ids=lambda p: p.name)
def test_only_synthetic_identity_numbers(path: Path) -> None:
    """Synthetic numbers have month + 80 in digits 3-4; anything else could be a person."""
    for match in _ELEVEN.finditer(path.read_text(encoding="utf-8")):
        month = int(match.group(1)[2:4])
        assert 81 <= month <= 92, f"{path.name}: an 11-digit number that is not synthetic"
