"""The daemon hands the heap a step freed back to the kernel after every step
(``gateway.ops.memory``), so its resident size follows what it keeps, not the busiest
minute it ever had."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from gateway.context import Gateway
from gateway.ops import daemon, memory

# A heap left full of holes, as a step that built and dropped many objects leaves it:
# blocks above pymalloc's 512-byte limit come from glibc, and every twentieth is kept
# so no stretch of the heap is free at its top, where glibc would return it anyway.
FRAGMENT = textwrap.dedent(
    """
    import json
    from gateway.ops import memory

    def rss_kib():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

    kept, dropped = [], []
    for i in range(100_000):
        (kept if i % 20 == 0 else dropped).append(bytes(600 + i % 50))
    del dropped
    before = rss_kib()
    returned = memory.release_free_heap()
    print(json.dumps({"before": before, "after": rss_kib(), "returned": returned, "kept": len(kept)}))
    """
)


@pytest.mark.skipif(not memory.available(), reason="this C library has no malloc_trim (not glibc)")
def test_free_heap_pages_go_back_to_the_kernel() -> None:
    command = [sys.executable, "-c", FRAGMENT]
    out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    facts = json.loads(out.stdout)
    assert facts["returned"] is True
    # about 57 MiB of the dropped blocks sit in whole free pages between the kept ones
    assert facts["before"] - facts["after"] > 30 * 1024, facts


def test_every_step_ends_by_releasing_the_free_heap_even_a_failed_one(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr(daemon.memory, "release_free_heap", lambda: calls.append("trim") or True)
    d = daemon.Daemon(gw_sqlite)

    def fails() -> None:
        calls.append("step")
        raise RuntimeError("a step that fails")

    d._guarded("ok", lambda: calls.append("step"))
    d._guarded("failing", fails)
    assert calls == ["step", "trim", "step", "trim"]
