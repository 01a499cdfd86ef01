"""What hostile input costs the parsers, with the caps and without them.

Usage::

    .venv/bin/python benchmarks/attacks.py [--cpu-limit S] [--memory-limit MB] [--only TEXT] [--markdown]

Each attack is built and parsed in a fresh process, twice:

- *before*: the same ``parse_mail`` / ``parse_order`` with every cap lifted
  (``MailLimits.unlimited()``, ``XmlLimits.unlimited()``), no CPU budget, and the
  HTML body handed to lxml whole and as it came (``_HTML_LIMIT`` and ``_bare_tags``
  switched off), which is what the parsers did before the caps. These runs are
  stopped by an rlimit on CPU time (``--cpu-limit``, default 2 s; raise it to see the
  full cost) and on address space (``--memory-limit``, default 3072 MB), so a figure
  at the limit means "at least this";
- *after*: the parsers as they are, with their default caps and budget.

The processes are forked from this one after it has imported the parsers and
compiled the schema, so a run pays for its parse and nothing else; each child builds
its own input, so its memory holds only that. For each run the table shows the
outcome, the CPU seconds of the parse (as the child measured it; when the child was
killed, the CPU of the whole child) and the child's peak RSS, from the rusage
``os.wait4`` returns for that child alone (``getrusage(RUSAGE_CHILDREN)`` would give
the largest child so far instead). The first row parses a small valid order: its RSS
is the floor the imports cost.

This is a script, not a test; on two idle cores it finishes in about 15 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' factories live beside the package


import gateway.messages.mail as mail_module  # noqa: E402
from gateway import samples  # noqa: E402
from gateway.messages.mail import MailError, MailLimits, parse_mail  # noqa: E402
from gateway.messages.orders import OrderError, XmlLimits, parse_order  # noqa: E402
from schemas import EXAMPLES_DIR  # noqa: E402

NY_VOKSEN = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()
MERKNAD = b"<Merknad>Personen har \xc3\xb8nsket samtale p\xc3\xa5 ettermiddagstid.</Merknad>"
WORD = b"=?utf-8?q?R=C3=A5d?="

# ---------------------------------------------------------------------- attacks


def header_bomb(name: bytes, words: int, *, folded: bool = False) -> bytes:
    value = (b"\r\n " if folded else b" ").join([WORD] * words)
    if name == b"From":
        return b"From: " + value + b" <a@example.org>\r\nSubject: x\r\n\r\nhei\r\n"
    return b"From: a@example.org\r\n" + name + b": " + value + b"\r\n\r\nhei\r\n"


def mime_flood(parts: int) -> bytes:
    part = b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n"
    head = b"From: a@example.org\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
    return head + part * parts + b"--b--\r\n"


def mime_nesting(depth: int, lines: int) -> bytes:
    opening = b"".join(
        b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)
    )
    closing = b"".join(b"\r\n--b%d--\r\n" % i for i in reversed(range(depth)))
    body = b"Content-Type: text/plain\r\n\r\n" + b"x\r\n" * lines
    return b"From: a@example.org\r\nMIME-Version: 1.0\r\n" + opening + body + closing


def parameter_flood(count: int) -> bytes:
    parameters = b"; ".join(b"name*%d*=utf-8''a" % i for i in range(count))
    return b"From: a@example.org\r\nContent-Type: text/plain; " + parameters + b"\r\n\r\nhei\r\n"


def real_mail() -> bytes:
    message = EmailMessage()
    message["From"] = "Påtalejurist Åse Øvrebø <ase.ovrebo@politiet.no>"
    message["To"] = "russak@kommune.example"
    message["Subject"] = "Pålegg om oppmøte for samtale ved rådgivende enhet for russaker"
    message.set_content("Hei,\n\nvedlagt følger ordre og brev.\n\n-- \nÅse\n" * 20)
    message.add_attachment(NY_VOKSEN, maintype="application", subtype="xml", filename="ordre.xml")
    for i in range(9):
        pdf = b"%PDF-1.7\n" + os.urandom(200_000)
        message.add_attachment(pdf, maintype="application", subtype="pdf", filename=f"vedlegg {i}.pdf")
    return message.as_bytes()


def html_mail(html: bytes) -> bytes:
    return b"From: a@example.org\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html


def html_attribute_flood(count: int) -> bytes:
    return html_mail(b"<p " + b" ".join(b'a%d="<"' % i for i in range(count)) + b">STATUS</p>")


def attribute_flood(count: int) -> bytes:
    attributes = b"".join(b' a%d="x"' % i for i in range(count))
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad" + attributes + b">x</Merknad>")


def xml_nesting(depth: int) -> bytes:
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad>" + b"<a>" * depth + b"</a>" * depth + b"</Merknad>")


def element_flood(count: int) -> bytes:
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad>" + b"<a/>" * count + b"</Merknad>")


ATTACKS: list[tuple[str, str, Callable[[], bytes]]] = [
    ("small valid order (floor)", "order", lambda: NY_VOKSEN),
    ("Subject: 2,000 encoded words", "mail", lambda: header_bomb(b"Subject", 2_000)),
    ("Subject: 10,000 encoded words", "mail", lambda: header_bomb(b"Subject", 10_000)),
    ("Subject: 80,000 encoded words", "mail", lambda: header_bomb(b"Subject", 80_000)),
    ("From name: 10,000 words, folded", "mail", lambda: header_bomb(b"From", 10_000, folded=True)),
    ("Message-ID: 10,000 encoded words", "mail", lambda: header_bomb(b"Message-ID", 10_000)),
    ("Content-Type: 5,000 RFC 2231 segments", "mail", lambda: parameter_flood(5_000)),
    ("MIME flood: 80,000 parts", "mail", lambda: mime_flood(80_000)),
    ("MIME nesting: 100 deep, 2 M lines", "mail", lambda: mime_nesting(100, 2_000_000)),
    ("HTML body: 40,000 attributes on a tag", "mail", lambda: html_attribute_flood(40_000)),
    ("HTML body: 16 MB of paragraphs", "mail", lambda: html_mail(b"<p>x</p>" * 2_000_000)),
    ("MIME: 250 parts (inside the caps)", "mail", lambda: mime_flood(249)),
    ("MIME: 9 deep, 499,000 lines (inside)", "mail", lambda: mime_nesting(9, 499_000)),
    ("Subject: 199 words, folded (inside)", "mail", lambda: header_bomb(b"Subject", 199, folded=True)),
    ("real mail: 10 attachments, 2.4 MB", "mail", real_mail),
    ("XML: 1 MB of attributes on one element", "order", lambda: attribute_flood(90_000)),
    ("XML: 100,000 empty elements", "order", lambda: element_flood(100_000)),
    ("XML: nesting 250 deep", "order", lambda: xml_nesting(250)),
    ("XML: largest valid order", "order", samples.largest_valid_order),
]


# ---------------------------------------------------------------------- running


@dataclass(frozen=True)
class Run:
    outcome: str
    size: int
    cpu: float
    rss_mb: float


@dataclass(frozen=True)
class Job:
    name: str
    kind: str
    build: Callable[[], bytes]
    mode: str  # "before" or "after"


def child(job: Job, cpu_limit: int, memory_mb: int, out: int) -> None:
    """In the forked child: build the input, parse it once, report on ``out``."""
    if job.mode == "before":
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_limit, cpu_limit + 2))
        resource.setrlimit(resource.RLIMIT_AS, (memory_mb << 20, memory_mb << 20))
        mail_module._HTML_LIMIT = 1 << 62
        mail_module._bare_tags = lambda html: html
    data = job.build()
    options: dict[str, Any] = {}
    if job.mode == "before":
        options = {"cpu_seconds": None}
        options["limits"] = MailLimits.unlimited() if job.kind == "mail" else XmlLimits.unlimited()
    started = time.thread_time()
    try:
        if job.kind == "mail":
            parse_mail(data, **options)
        else:
            parse_order(data, max_bytes=2_000_000, **options)
        outcome = "parsed"
    except (MailError, OrderError) as exc:
        outcome = f"refused: {exc}"
    except MemoryError:
        outcome = "MemoryError"
    report = {"outcome": outcome, "size": len(data), "cpu": time.thread_time() - started}
    os.write(out, json.dumps(report).encode())


def run_all(jobs: list[Job], cpu_limit: int, memory_mb: int, workers: int) -> list[Run]:
    """Fork one child per job, ``workers`` at a time, and collect each one's rusage."""
    results: dict[int, Run] = {}
    running: dict[int, tuple[int, int, float]] = {}  # pid -> (job index, pipe, deadline)
    waiting = list(enumerate(jobs))
    while waiting or running:
        while waiting and len(running) < workers:
            index, job = waiting.pop(0)
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child
                os.close(read_end)
                code = 0
                try:
                    child(job, cpu_limit, memory_mb, write_end)
                except BaseException:
                    code = 1
                os._exit(code)
            os.close(write_end)
            running[pid] = (index, read_end, time.monotonic() + cpu_limit * 4 + 30)
        pid, status, usage = os.wait4(-1, os.WNOHANG)
        if pid == 0:
            for other, (_, _, deadline) in running.items():
                if time.monotonic() > deadline:  # a wall-clock guard on top of the rlimits
                    os.kill(other, signal.SIGKILL)
            time.sleep(0.02)
            continue
        index, read_end, _ = running.pop(pid)
        with os.fdopen(read_end, "rb") as pipe:
            output = pipe.read().decode()
        results[index] = _run(output, status, usage)
    return [results[index] for index in range(len(jobs))]


def _run(output: str, status: int, usage: resource.struct_rusage) -> Run:
    rss_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    try:
        report = json.loads(output)
        return Run(str(report["outcome"]), int(report["size"]), float(report["cpu"]), rss_mb)
    except (ValueError, KeyError):
        cpu = usage.ru_utime + usage.ru_stime
        killed = os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGXCPU
        outcome = "killed at the CPU limit" if killed else f"died (status {status})"
        return Run(outcome, 0, cpu, rss_mb)


def short(outcome: str, width: int = 58) -> str:
    return outcome if len(outcome) <= width else outcome[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--cpu-limit", type=int, default=2, help="CPU seconds for a run without caps")
    parser.add_argument(
        "--memory-limit", type=int, default=3072, help="MB of address space, runs without caps"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", default="", help="run only the attacks whose name contains this")
    args = parser.parse_args()

    parse_order(NY_VOKSEN)  # warm up: imports done, schema compiled, before any fork
    parse_mail(real_mail())
    chosen = [(name, kind, build) for name, kind, build in ATTACKS if args.only.lower() in name.lower()]
    # The slow runs (without caps) first, so the cores stay busy to the end.
    jobs = [Job(name, kind, build, mode) for mode in ("before", "after") for name, kind, build in chosen]
    runs = run_all(jobs, args.cpu_limit, args.memory_limit, workers=max(2, os.cpu_count() or 2))
    results = {(job.name, job.mode): run for job, run in zip(jobs, runs, strict=True)}

    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs;"
          f" runs without caps limited to {args.cpu_limit} s CPU and {args.memory_limit} MB")  # fmt: skip
    header = ("attack", "bytes", "without caps", "CPU s", "RSS MB", "with caps", "CPU s", "RSS MB")
    rows = []
    for name, _, _ in chosen:
        before, after = results[(name, "before")], results[(name, "after")]
        size = max(before.size, after.size)
        rows.append((
            name, f"{size:,}",
            short(before.outcome, 28), f"{before.cpu:.2f}", f"{before.rss_mb:.0f}",
            short(after.outcome), f"{after.cpu:.2f}", f"{after.rss_mb:.0f}",
        ))  # fmt: skip
    if args.markdown:
        print("| " + " | ".join(header) + " |")
        print("|" + "|".join("---:" if h in ("bytes", "CPU s", "RSS MB") else "---" for h in header) + "|")
        for row in rows:
            print("| " + " | ".join(row) + " |")
        return
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(cell).rjust(w) if cell[:1].isdigit() else str(cell).ljust(w)
                        for cell, w in zip(row, widths, strict=True)))  # fmt: skip


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # a killed child must not dump core
    main()
