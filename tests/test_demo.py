"""``russak demo`` runs the real daemon cycle over simulated months and checks itself."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gateway.cli import main


def test_demo_tells_the_whole_routine_and_its_checks_pass(tmp_path: Path) -> None:
    site = tmp_path / "demo"
    result = CliRunner().invoke(main, ["demo", "--keep", str(site)])
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Checks: ok" in out
    for expected in (
        "adult who attends",
        "16-year-old with guardians",
        "endring arrives before its order",
        "order withdrawn (tilbakekall)",
        "registered from the police letter",
        "DTDs and entity",
    ):
        assert expected in out
    assert len(list((site / "spool" / "outbox").glob("*.xml"))) == 2
    assert not list((site / "spool" / "inbox").iterdir())


def test_demo_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "x").write_text("keep me")
    result = CliRunner().invoke(main, ["demo", "--keep", str(tmp_path)])
    assert result.exit_code == 2
    assert (tmp_path / "x").read_text() == "keep me"
