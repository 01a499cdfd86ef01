"""The shipped systemd unit and its sysusers/tmpfiles snippets say what we promise:
Type=notify with a watchdog, reload by SIGHUP, no restart loop on a configuration
error, memory and task caps, the key as a credential, and the full hardening set."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from gateway.ops import exitcodes

SYSTEMD = Path(__file__).resolve().parent.parent / "systemd"
UNIT = SYSTEMD / "russak-gateway.service"


class _Accumulate(dict[str, Any]):
    """Keeps every value of a key that systemd allows to repeat (SystemCallFilter=)."""

    def __setitem__(self, key: str, value: Any) -> None:
        if isinstance(value, list) and key in self and isinstance(self[key], list):
            self[key].extend(value)
        else:
            super().__setitem__(key, value)


def load_unit() -> dict[str, dict[str, list[str]]]:
    parser = configparser.ConfigParser(
        strict=False,
        dict_type=_Accumulate,
        interpolation=None,
        empty_lines_in_values=False,
        comment_prefixes=("#", ";"),
        delimiters=("=",),
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    parser.read_string(UNIT.read_text(encoding="utf-8"))
    return {
        section: {key: value.split("\n") for key, value in parser.items(section)}
        for section in parser.sections()
    }


@pytest.fixture(scope="module")
def unit() -> dict[str, dict[str, list[str]]]:
    return load_unit()


def one(unit: dict[str, dict[str, list[str]]], key: str, section: str = "Service") -> str:
    values = unit[section][key]
    assert len(values) == 1, f"{key} set more than once"
    return values[0]


def test_notify_service_with_watchdog(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "Type") == "notify"
    assert one(unit, "NotifyAccess") == "main"
    assert one(unit, "WatchdogSec") == "120"
    assert one(unit, "Restart") == "on-failure"
    assert one(unit, "RestartSec") == "10"
    assert one(unit, "TimeoutStopSec") == "60"
    assert one(unit, "ExecStart") == "/usr/bin/russak --config /etc/russak-gateway/russak.toml run"
    assert one(unit, "Environment") == "RUSSAK_CONFIG=/etc/russak-gateway/russak.toml"
    assert one(unit, "WantedBy", "Install") == "multi-user.target"
    assert one(unit, "ExecReload") == "/bin/kill -HUP $MAINPID"  # the daemon reloads on SIGHUP


def test_configuration_errors_do_not_restart_loop(unit: dict[str, dict[str, list[str]]]) -> None:
    codes = tuple(int(code) for code in one(unit, "RestartPreventExitStatus").split())
    assert codes == exitcodes.RESTART_PREVENTED
    assert exitcodes.EXIT_CONFIG in codes and exitcodes.EXIT_KEY in codes
    for restartable in (exitcodes.EXIT_ALREADY_RUNNING, exitcodes.EXIT_UNAVAILABLE, exitcodes.EXIT_SOFTWARE):
        assert restartable not in codes


def test_memory_and_task_caps_with_the_reason(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "MemoryMax") == "512M"
    assert one(unit, "MemorySwapMax") == "0"
    assert one(unit, "TasksMax") == "64"
    text = UNIT.read_text(encoding="utf-8")
    comment = text[: text.index("MemoryMax=")].rsplit("\n\n", 1)[-1]
    assert "hostile input" in comment and "quarantines" in comment and "3 times" in comment


def test_runs_as_its_own_user_with_private_state(unit: dict[str, dict[str, list[str]]]) -> None:
    assert one(unit, "User") == "russak"
    assert one(unit, "Group") == "russak"
    assert one(unit, "UMask") == "0077"
    assert one(unit, "StateDirectory") == "russak-gateway"
    assert one(unit, "StateDirectoryMode") == "0700"
    assert one(unit, "ConfigurationDirectory") == "russak-gateway"
    assert one(unit, "LoadCredential") == "russak.key:/etc/russak-gateway/russak.key"
    assert "%d/russak.key" in UNIT.read_text(encoding="utf-8")  # documented for key_file
    assert one(unit, "StandardOutput") == "journal"
    assert one(unit, "StandardError") == "journal"
    assert one(unit, "SyslogIdentifier") == "russak-gateway"


HARDENING = {
    "NoNewPrivileges": "yes",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "DevicePolicy": "closed",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "CapabilityBoundingSet": "",
    "AmbientCapabilities": "",
    "SystemCallArchitectures": "native",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
}


@pytest.mark.parametrize(("key", "expected"), sorted(HARDENING.items()))
def test_hardening(unit: dict[str, dict[str, list[str]]], key: str, expected: str) -> None:
    assert one(unit, key) == expected


def test_system_call_filter(unit: dict[str, dict[str, list[str]]]) -> None:
    assert unit["Service"]["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]


def test_no_ip_deny_by_default_and_nothing_widened(unit: dict[str, dict[str, list[str]]]) -> None:
    service = unit["Service"]
    assert "IPAddressDeny" not in service  # endpoints vary per site; see the comment
    for widening in ("ReadWritePaths", "BindPaths", "DynamicUser", "PrivateNetwork"):
        assert widening not in service
    assert "AmbientCapabilities" in service and service["AmbientCapabilities"] == [""]


def test_sysusers_line() -> None:
    lines = [
        line
        for line in (SYSTEMD / "russak-gateway.sysusers").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines == ['u russak - "russak-gateway" /var/lib/russak-gateway']


def test_tmpfiles_are_private_to_the_service_user() -> None:
    entries = [
        line.split()
        for line in (SYSTEMD / "russak-gateway.tmpfiles").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    paths = {entry[1]: entry for entry in entries}
    assert "/var/lib/russak-gateway" in paths
    for sub in ("spool", "spool/inbox", "spool/outbox", "spool/mail"):
        assert f"/var/lib/russak-gateway/{sub}" in paths
    for entry in entries:
        kind, path, mode, user, group = entry[:5]
        assert kind == "d"
        assert path.startswith("/var/lib/russak-gateway")
        assert (user, group) == ("russak", "russak")
        assert re.fullmatch(r"0[0-7]{3}", mode)
        assert int(mode, 8) & 0o007 == 0, f"{path} is open to others"
        assert int(mode, 8) == 0o700


def test_systemd_analyze_verify(tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (not a systemd host)")
    # verify checks that ExecStart exists; the package's binary is not installed in a
    # test environment, so only that path is swapped for one that exists.
    stand_in = shutil.which("true")
    assert stand_in is not None
    text = UNIT.read_text(encoding="utf-8").replace("ExecStart=/usr/bin/russak ", f"ExecStart={stand_in} ")
    copy = tmp_path / UNIT.name
    copy.write_text(text, encoding="utf-8")
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    problems = [
        line
        for line in (result.stdout + result.stderr).splitlines()
        if UNIT.name in line or "Unknown" in line or "nvalid" in line
    ]
    assert result.returncode == 0, result.stderr
    assert problems == []
