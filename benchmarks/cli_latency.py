"""How long an operator waits for ``russak --help``, ``cases`` and the other read-only commands (#8).

Usage::

    .venv/bin/python benchmarks/cli_latency.py [--runs N] [--cases N] [--dir PATH] [--instructions]

Each command runs ``--runs`` times, every time in a fresh process
(``python -m gateway ...``), so import time, which dominates a short command, is
paid every time as it is at the shell. The site is made by ``russak init`` in a
temporary folder (or ``--dir``) and gets ``--cases`` synthetic orders first, so
``cases`` has something to list. Prints the median, minimum and maximum wall time
in milliseconds, the median CPU time, and the load average (a busy machine
stretches wall time); the targets are 150 ms for ``--help`` and 300 ms for
``cases``. ``case show``, ``status``, ``outbox`` and ``quarantine`` are timed too,
without a target.

On a shared machine wall and CPU time move with the neighbours' load. With
``--instructions`` (needs valgrind) each command also runs once under callgrind and
the script prints the instructions it executed: the same count on a busy machine as
on an idle one, so two versions of the code can be compared at any load.

To see where the time goes: ``python -X importtime -m gateway --help``.
Identity numbers are synthetic (month + 80).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' factories live beside the package

from tests import factories  # noqa: E402

RUSSAK = [sys.executable, "-m", "gateway"]
TARGETS_MS = {"--help": 150.0, "cases": 300.0}


ENV = dict(os.environ)


def _russak(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUSSAK, *args], capture_output=True, text=True, timeout=120, cwd=ROOT, env=ENV)


def cache_bytecode(folder: Path) -> None:
    """Let the children keep compiled bytecode (in ``folder``), as an installed wheel has it.

    With ``PYTHONDONTWRITEBYTECODE`` set (as in some containers) and a source checkout,
    every run would compile the gateway's modules afresh, which is not what an
    operator's installed copy does.
    """
    ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    ENV["PYTHONPYCACHEPREFIX"] = str(folder)


def make_site(directory: Path, cases: int) -> Path:
    made = _russak("init", "--dir", str(directory))
    if made.returncode != 0:
        raise SystemExit(f"russak init failed: {made.stderr}")
    config = directory / "russak.toml"
    orders = []
    for i in range(cases):
        path = directory / f"order-{i}.xml"
        birth = date(1990 + i % 20, 1 + i % 12, 1 + i % 28)
        path.write_bytes(factories.order_xml(national_id=factories.fnr(birth), birth=birth))
        orders.append(str(path))
    if orders:
        taken = _russak("--config", str(config), "ingest", *orders)
        if taken.returncode != 0:
            raise SystemExit(f"russak ingest failed: {taken.stdout}{taken.stderr}")
    return config


def first_case_number(config: Path) -> str:
    listed = _russak("--config", str(config), "cases", "--json")
    cases = json.loads(listed.stdout) if listed.returncode == 0 else []
    if not cases:
        raise SystemExit("russak cases listed nothing to show (use --cases 1 or more)")
    return str(cases[0]["number"])


def rows_to_time(config: Path) -> list[tuple[str, list[str], float | None]]:
    """(name, arguments, target in ms or None) of every command timed."""
    site = ["--config", str(config)]
    return [
        ("--help", ["--help"], 150.0),
        ("cases", [*site, "cases"], 300.0),
        ("case show", [*site, "case", "show", first_case_number(config)], None),
        ("status", [*site, "status"], None),
        ("outbox", [*site, "outbox"], None),
        ("quarantine", [*site, "quarantine"], None),
    ]


# ``status`` exits 1 (degraded) on a site with no daemon running: that is its answer.
ACCEPTED_EXIT = (0, 1)


def instructions(args: list[str]) -> float | None:
    """Millions of instructions one fresh process executes (callgrind), or None."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        return None
    _russak(*args)  # bytecode cached first, as for the timed runs
    result = subprocess.run(
        [valgrind, "--tool=callgrind", "--callgrind-out-file=/dev/null", *RUSSAK, *args],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=ROOT,
        env=ENV,
    )
    found = re.search(r"Collected : (\d+)", result.stderr)
    return int(found.group(1)) / 1e6 if found else None


def time_runs(args: list[str], runs: int) -> tuple[list[float], list[float]]:
    """Wall and CPU (user + system) time of ``runs`` fresh processes, in milliseconds.

    One warm-up run first (page cache, .pyc files), as a second call at the shell
    would find them. CPU time is the child's own, so it moves less than wall time
    when other work shares the machine; report both.
    """
    _russak(*args)
    wall, cpu = [], []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        started = time.perf_counter()
        result = _russak(*args)
        wall.append((time.perf_counter() - started) * 1000)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append((after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000)
        if result.returncode not in ACCEPTED_EXIT:
            raise SystemExit(f"russak {' '.join(args)} exited {result.returncode}: {result.stderr}")
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--runs", type=int, default=20, help="processes per command (default 20)")
    parser.add_argument("--cases", type=int, default=20, help="synthetic orders to list (default 20)")
    parser.add_argument("--dir", type=Path, help="make the site here (an empty or new folder)")
    parser.add_argument(
        "--no-bytecode-cache",
        action="store_true",
        help="keep this environment's bytecode settings (PYTHONDONTWRITEBYTECODE: compile every run)",
    )
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="also count each command's instructions once under valgrind (independent of load)",
    )
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="russak-cli-latency-") as scratch:
        if not args.no_bytecode_cache:
            cache_bytecode(Path(scratch) / "pycache")
        config = make_site(args.dir or Path(scratch) / "site", args.cases)
        for name, command, target in rows_to_time(config):
            wall, cpu = time_runs(command, args.runs)
            counted = instructions(command) if args.instructions else None
            results.append((name, wall, cpu, target, counted))
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    cache = "compiled every run" if args.no_bytecode_cache else "bytecode cached"
    print(f"python {sys.version.split()[0]}, {args.runs} fresh processes per command ({cache}), load {load}")
    header = f"{'command':<11} {'median':>9} {'min':>9} {'max':>9} {'cpu med':>9} {'target':>9}"
    print(header + ("  instructions" if args.instructions else ""))
    for name, wall, cpu, target, counted in results:
        median = statistics.median(wall)
        goal = f"{target:>6.0f} ms" if target else f"{'-':>9}"
        verdict = ("ok" if median <= target else "OVER") if target else "  "
        count = "" if not args.instructions else f"  {counted:,.0f} M" if counted else "  (no valgrind)"
        print(
            f"{name:<11} {median:>6.0f} ms {min(wall):>6.0f} ms {max(wall):>6.0f} ms "
            f"{statistics.median(cpu):>6.0f} ms {goal}  {verdict}{count}"
        )


if __name__ == "__main__":
    main()
