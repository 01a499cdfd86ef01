"""The CLI package: a lazy loader, so ``--help`` imports no command, and tidy help (#13, #12)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import gateway.cli
from gateway.cli import COMMANDS, LazyGroup, main
from gateway.context import Gateway

CLI_DIR = Path(gateway.cli.__file__).parent

# Imports what ``main(ARGS)`` loaded: command modules, the heavy libraries, the daemon.
PROBE = """
import json, sys
from gateway.cli import main
try:
    main(sys.argv[1:], prog_name="russak")
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules if m.startswith(("gateway", "sqlalchemy", "pydantic",
      "alembic", "cryptography", "jinja2", "lxml", "apscheduler", "holidays")))))
"""


def _loaded(*args: str) -> set[str]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=60, check=True
    )
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


def test_help_imports_no_command_module_and_nothing_heavy() -> None:
    loaded = _loaded("--help")
    assert loaded == {"gateway", "gateway.cli"}, loaded


def test_the_brief_s_probe_after_help() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gateway.cli, sys\n"
            "try:\n    gateway.cli.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('gateway.ops.daemon' in sys.modules)",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.stdout.strip().splitlines()[-1] == "False"


def test_a_command_s_help_loads_only_its_own_module() -> None:
    loaded = _loaded("cases", "--help")
    commands = {m for m in loaded if m.startswith("gateway.cli.")}
    assert commands <= {"gateway.cli.cases", "gateway.cli.output"}, commands
    assert "gateway.ops.daemon" not in loaded and "gateway.app" not in loaded


# What a command that only reads must not load (#8): the wiring and the services above
# the schema, Alembic, and the libraries only they use.
NOT_FOR_READING = (
    "gateway.app",
    "gateway.intake",
    "gateway.staff",
    "gateway.delivery",
    "gateway.cases",
    "gateway.ops.daemon",
    "alembic",
    "apscheduler",
    "jinja2",
    "lxml",
)


@pytest.mark.parametrize(
    ("args", "also_not"),
    [
        (["cases"], ("holidays", "sqlalchemy", "gateway.models", "cryptography")),  # sqlite3 alone
        (["cases", "--json"], ("holidays",)),
        (["outbox"], ("holidays",)),
        (["quarantine", "--json"], ("holidays",)),
        (["status"], ()),  # the next digest is counted in working days
    ],
    ids=" ".join,
)
def test_a_read_only_command_wires_nothing(
    gw_sqlite: Gateway, args: list[str], also_not: tuple[str, ...]
) -> None:
    loaded = _loaded("--config", str(gw_sqlite.settings.source), *args)
    if "sqlalchemy" not in also_not:  # the plain listing reads through sqlite3 (gateway.cli.quick)
        assert "gateway.models" in loaded  # it did read the database
    heavy = {m for m in loaded if m.startswith((*NOT_FOR_READING, *also_not))}
    assert heavy == set(), heavy


def test_every_listed_command_loads_and_its_help_line_is_its_docstring_s_first_line() -> None:
    ctx = click.Context(main)
    assert isinstance(main, LazyGroup)
    for name, (_, line) in COMMANDS.items():
        command = main.get_command(ctx, name)
        assert isinstance(command, click.Command), name
        assert command.help is not None, name
        assert command.help.splitlines()[0] == line, f"{name}: COMMANDS says {line!r}"
        assert len(line) <= 60 and line.endswith("."), name


def _every_command() -> list[tuple[list[str], click.Command]]:
    found: list[tuple[list[str], click.Command]] = []
    ctx = click.Context(main)

    def walk(path: list[str], command: click.Command) -> None:
        found.append((path, command))
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):
                child = command.get_command(ctx, sub)
                assert child is not None
                walk([*path, sub], child)

    for name in COMMANDS:
        command = main.get_command(ctx, name)
        assert command is not None
        walk([name], command)
    return found


@pytest.mark.parametrize("path", [p for p, _ in _every_command()], ids=" ".join)
def test_help_has_no_markup_debris_and_no_cut_off_descriptions(path: list[str]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], prog_name="russak", terminal_width=80)
    assert result.exit_code == 0, result.output
    assert "``" not in result.output and "`" not in result.output
    usage, _, body = result.output.partition("\n")
    assert usage.startswith(f"Usage: russak {' '.join(path)} ")
    assert "..." not in body and "…" not in body  # click marks a cut-off description so


def test_main_help_lists_every_command_and_the_exit_code_table() -> None:
    result = CliRunner().invoke(main, ["--help"], prog_name="russak", terminal_width=80)
    assert result.exit_code == 0
    for name in COMMANDS:
        assert re.search(rf"^  {name}\s", result.output, re.MULTILINE), name
    table = result.output[result.output.index("Exit codes") :]
    assert re.search(r"^\s+0\s+ok$", table, re.MULTILINE)
    assert re.search(r"^\s+1\s+refused or degraded", table, re.MULTILINE)
    assert re.search(r"^\s+2\s+configuration or usage", table, re.MULTILINE)


def test_python_dash_m_gateway_calls_itself_russak() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0 and result.stdout.startswith("Usage: russak ")


def test_every_module_of_the_package_is_under_400_lines() -> None:
    for path in CLI_DIR.glob("*.py"):
        lines = len(path.read_text(encoding="utf-8").splitlines())
        assert lines < 400, f"{path.name}: {lines} lines"


def test_the_package_module_holds_no_command() -> None:
    source = (CLI_DIR / "__init__.py").read_text(encoding="utf-8")
    assert "@main.command" not in source and "@click.command" not in source
    assert not re.search(r"^from gateway\.(app|models|ops|cases|intake|staff)", source, re.MULTILINE)
