"""The operations docs name everything an operator can meet (#8): every staff alert the
code sends, every reminder rule in the log, every metric, every daemon exit code, and
what undoing each migration loses. Read from the code, so a new one without its line
in the docs fails here."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from gateway import db
from gateway.ops.exitcodes import EXIT_CODES

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "operations-reference.md").read_text(encoding="utf-8")
GUIDE = (ROOT / "docs" / "ops-guide.md").read_text(encoding="utf-8")


def _calls(path: Path, name: str) -> list[ast.Call]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [
        node
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == name
    ]


def _texts(node: ast.expr) -> list[str]:
    """A literal subject, the fixed start of an f-string, or both arms of ``a if c else b``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr) and isinstance(node.values[0], ast.Constant):
        return [str(node.values[0].value).rstrip(" (")]
    if isinstance(node, ast.IfExp):
        return _texts(node.body) + _texts(node.orelse)
    raise AssertionError(f"a subject the test cannot read: {ast.unparse(node)}")


def _alert_subjects() -> list[str]:
    staff = ROOT / "gateway" / "staff"
    found = [text for call in _calls(staff / "alerts.py", "alert") for text in _texts(call.args[3])]
    found += [text for call in _calls(staff / "reminders.py", "Due") for text in _texts(call.args[2])]
    return found


def test_every_staff_alert_is_explained() -> None:
    subjects = _alert_subjects()
    assert len(subjects) >= 20, subjects
    missing = [s for s in subjects if f"`{s}" not in REFERENCE]
    assert missing == [], f"add these alerts to docs/operations-reference.md: {missing}"


def test_every_reminder_rule_is_in_the_log_line_table() -> None:
    rules = [
        kw.value.value
        for call in _calls(ROOT / "gateway" / "staff" / "reminders.py", "Due")
        for kw in call.keywords
        if kw.arg == "what" and isinstance(kw.value, ast.Constant)
    ]
    assert len(rules) == len(_calls(ROOT / "gateway" / "staff" / "reminders.py", "Due"))
    assert [r for r in rules if f"`{r}`" not in REFERENCE] == []


def test_every_metric_and_exit_code_is_documented() -> None:
    source = (ROOT / "gateway" / "ops" / "metrics.py").read_text(encoding="utf-8")
    names = re.findall(r'f"\{PREFIX\}_([a-z_]+)"', source) + re.findall(r'_gauge\(\s*"([a-z_]+)"', source)
    assert {"intake_messages", "outbox_dead", "healthy", "daemon_running"} <= set(names), names
    for name in names:
        metric = f"russak_{name}"
        assert f"`{metric}`" in REFERENCE or f"`{metric}_total`" in REFERENCE, metric
    for code in EXIT_CODES:
        assert f"| {code.code} |" in REFERENCE, code


def test_every_downgrade_loss_is_in_the_ops_guide() -> None:
    for revision in db.DOWNGRADE_LOSES:
        assert f"| `{revision}`" in GUIDE, revision
    assert "## Upgrade and rollback" in GUIDE
    assert "Migrations only go forward" not in GUIDE
