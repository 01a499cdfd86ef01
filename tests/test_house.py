"""The house rules of issue #13, checked on every run: imports run one way (the
import-linter contracts in pyproject.toml), no function-local import of the gateway's
own modules outside the CLI (where they are lazy on purpose, for start-up time),
and one concept per module, none over 400 lines (migrations excepted)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 400


def _modules() -> list[Path]:
    found = [*sorted((ROOT / "gateway").rglob("*.py")), *sorted((ROOT / "connectors").rglob("*.py"))]
    return [p for p in found if "migrations" not in p.parts]


def test_no_module_is_over_400_lines() -> None:
    long = {str(p.relative_to(ROOT)): n for p in _modules() if (n := len(p.read_text().splitlines())) > LIMIT}
    assert long == {}, f"split these by concept: {long}"


def test_no_function_local_import_of_a_gateway_module_outside_the_cli() -> None:
    found = []
    for path in _modules():
        if "cli" in path.relative_to(ROOT).parts[:2]:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                for inner in ast.walk(node):
                    if isinstance(inner, ast.ImportFrom) and (inner.module or "").startswith(
                        ("gateway", "connectors")
                    ):
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno} {inner.module}")
                    elif isinstance(inner, ast.Import) and any(
                        a.name.startswith(("gateway", "connectors")) for a in inner.names
                    ):
                        found.append(f"{path.relative_to(ROOT)}:{inner.lineno}")
    assert found == [], "an import inside a function hides a dependency (or a cycle): " + ", ".join(found)


def test_the_import_contracts_hold() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint)], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-3000:]


def test_the_schema_head_constant_is_alembics_head() -> None:
    from alembic.script import ScriptDirectory

    from gateway import db

    engine = db.make_engine("sqlite://")
    try:
        heads = ScriptDirectory.from_config(db._alembic_config(engine)).get_heads()
    finally:
        engine.dispose()
    assert heads == [db.SCHEMA_HEAD], "update gateway.db.SCHEMA_HEAD with the new migration"
