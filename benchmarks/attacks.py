"""What hostile input costs the parsers, with the caps and without them.

Usage::

    .venv/bin/python benchmarks/attacks.py [--cpu-limit S] [--memory-limit MB] [--only TEXT] [--markdown]

Each attack is built here and parsed in a fresh subprocess, twice:

- *before*: the same ``parse_mail`` / ``parse_order`` with every cap lifted
  (``MailLimits.unlimited()``, ``XmlLimits.unlimited()``) and no CPU budget, which is
  what the parsers did before the caps. These runs are stopped by an rlimit on CPU
  time (``--cpu-limit``, default 2 s; raise it to see the full cost) and on address space (``--memory-limit``,
  default 3072 MB), so a figure at the limit means "at least this";
- *after*: the parsers as they are, with their default caps and budget.

For each run the table shows the outcome, the CPU seconds of the parse itself (as
the child measured it; when the child was killed, the CPU of the whole child) and
the child's peak RSS, from the rusage ``os.wait4`` returns for that child alone
(``getrusage(RUSAGE_CHILDREN)`` would give the largest child so far instead). The
first row parses a small valid order: its RSS is the floor that imports alone cost.

This is a script, not a test; on two idle cores it finishes in about 25 seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # the tests' factories live beside the package

from lxml import etree  # noqa: E402

from gateway.samples import POLICE_ORG, UNIT_ORG, fnr  # noqa: E402
from schemas import EXAMPLES_DIR, ORDER_NS  # noqa: E402

NY_VOKSEN = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()
MERKNAD = b"<Merknad>Personen har \xc3\xb8nsket samtale p\xc3\xa5 ettermiddagstid.</Merknad>"
WORD = b"=?utf-8?q?R=C3=A5d?="

# The child: parse one file, print what happened and the CPU the parse took.
CHILD = r"""
import json, resource, sys, time
kind, mode, path, cpu_limit, memory_mb = sys.argv[1:6]
if mode == "before":
    resource.setrlimit(resource.RLIMIT_CPU, (int(cpu_limit), int(cpu_limit) + 2))
    resource.setrlimit(resource.RLIMIT_AS, (int(memory_mb) << 20, int(memory_mb) << 20))
sys.path.insert(0, sys.argv[6])
from gateway.messages.mail import MailError, MailLimits, parse_mail
from gateway.messages.orders import OrderError, XmlLimits, parse_order
data = open(path, "rb").read()
if kind == "mail":
    options = {"limits": MailLimits.unlimited(), "cpu_seconds": None} if mode == "before" else {}
    call = lambda: parse_mail(data, **options)
else:
    options = {"limits": XmlLimits.unlimited(), "cpu_seconds": None} if mode == "before" else {}
    call = lambda: parse_order(data, max_bytes=2_000_000, **options)
started = time.thread_time()
try:
    call()
    outcome = "parsed"
except (MailError, OrderError) as exc:
    outcome = "refused: " + str(exc)
except MemoryError:
    outcome = "MemoryError"
print(json.dumps({"outcome": outcome, "cpu": time.thread_time() - started}))
"""


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


def attribute_flood(count: int) -> bytes:
    attributes = b"".join(b' a%d="x"' % i for i in range(count))
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad" + attributes + b">x</Merknad>")


def xml_nesting(depth: int) -> bytes:
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad>" + b"<a>" * depth + b"</a>" * depth + b"</Merknad>")


def element_flood(count: int) -> bytes:
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad>" + b"<a/>" * count + b"</Merknad>")


def largest_valid_order() -> bytes:
    """Every optional element and repetition the schema allows, the longest remark."""
    q = f"{{{ORDER_NS}}}"
    root = etree.Element(q + "Oppmoteordre", nsmap={None: ORDER_NS})  # type: ignore[dict-item]

    def sub(parent: etree._Element, name: str, text: str | None = None, **attributes: str) -> etree._Element:
        element = etree.SubElement(parent, q + name, attributes)
        element.text = text
        return element

    def address(parent: etree._Element) -> None:
        adresse = sub(parent, "Adresse")
        for line in range(4):
            sub(adresse, "Linje", f"Adresselinje {line} " + "x" * 150)
        sub(adresse, "Postnummer", "5003")
        sub(adresse, "Poststed", "BERGEN")

    sub(root, "OrdreId", "3f2b8c1e-7a4d-4e2b-9c61-0d5e8a7b1c20")
    sub(root, "Meldingstype", "ny")
    sub(root, "Sendt", "2026-03-10T09:15:00+01:00")
    avsender = sub(root, "Avsender")
    sub(avsender, "Navn", "Testdal politidistrikt")
    sub(avsender, "Organisasjonsnummer", POLICE_ORG)
    kontakt = sub(avsender, "Kontakt")
    sub(kontakt, "Navn", "Politiadvokat Test Testesen")
    sub(kontakt, "Telefon", "+47 400 00 001")
    sub(kontakt, "Epost", "patale.testdal@example.org")
    sub(avsender, "Svarkanal", "patale.testdal@example.org", type="epost")
    mottaker = sub(root, "Mottaker")
    sub(mottaker, "Organisasjonsnummer", UNIT_ORG)
    sub(mottaker, "Kommunenummer", "4601")
    sak = sub(root, "Straffesak")
    sub(sak, "Saksnummer", "24817395")
    sub(sak, "Reaksjon", "ungdomsoppfolging")
    sub(sak, "Avgjort", "2026-03-02")
    sub(sak, "ProvetidTil", "2028-03-02")
    person = sub(root, "Person")
    sub(person, "Fodselsnummer", fnr())
    sub(person, "Fornavn", "Ola")
    sub(person, "Etternavn", "Testmann")
    sub(person, "Fodselsdato", "1990-05-17")
    address(person)
    sub(person, "Telefon", "+47 400 00 002")
    sub(person, "Epost", "ola.testmann@example.org")
    for guardian in range(4):
        foresatt = sub(person, "Foresatt")
        sub(foresatt, "Fornavn", f"Foresatt{guardian}")
        sub(foresatt, "Etternavn", "Testmann")
        address(foresatt)
    vilkar = sub(root, "Vilkar")
    sub(vilkar, "Oppmote", antall="20", frist="2026-06-01")
    sub(vilkar, "Rusmiddeltesting", antall="200", fra="2026-03-02", til="2028-03-02")
    sub(root, "Merknad", "Lang merknad med æøå. " * 180)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


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
    ("MIME: 250 parts (inside the caps)", "mail", lambda: mime_flood(249)),
    ("MIME: 9 deep, 499,000 lines (inside)", "mail", lambda: mime_nesting(9, 499_000)),
    ("Subject: 199 words, folded (inside)", "mail", lambda: header_bomb(b"Subject", 199, folded=True)),
    ("real mail: 10 attachments, 2.4 MB", "mail", real_mail),
    ("XML: 1 MB of attributes on one element", "order", lambda: attribute_flood(90_000)),
    ("XML: 100,000 empty elements", "order", lambda: element_flood(100_000)),
    ("XML: nesting 250 deep", "order", lambda: xml_nesting(250)),
    ("XML: largest valid order", "order", largest_valid_order),
]


# ---------------------------------------------------------------------- running


@dataclass(frozen=True)
class Run:
    outcome: str
    cpu: float
    rss_mb: float


def run_child(kind: str, mode: str, path: Path, cpu_limit: int, memory_mb: int) -> Run:
    """One parse in a fresh interpreter; its own rusage from ``os.wait4``."""
    command = [sys.executable, "-c", CHILD, kind, mode, str(path), str(cpu_limit), str(memory_mb), str(ROOT)]
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, cwd=ROOT)
        # A wall-clock guard on top of the rlimits, in case the child sleeps or blocks.
        guard = threading.Timer(cpu_limit * 4 + 30, process.kill)
        guard.start()
        assert process.stdout is not None
        output = process.stdout.read().decode()
        _, status, usage = os.wait4(process.pid, 0)
        guard.cancel()
        process.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        errors.seek(0)
        tail = errors.read().decode(errors="replace").strip().splitlines()[-1:]
    rss_mb = usage.ru_maxrss / 1024  # kilobytes on Linux
    try:
        result = json.loads(output.strip().splitlines()[-1])
        return Run(str(result["outcome"]), float(result["cpu"]), rss_mb)
    except (IndexError, ValueError, KeyError):
        cpu = usage.ru_utime + usage.ru_stime
        code = process.returncode
        outcome = "killed at the CPU limit" if code == -24 else f"died ({code}) {' '.join(tail)[:60]}"
        return Run(outcome, cpu, rss_mb)


def short(outcome: str, width: int = 58) -> str:
    return outcome if len(outcome) <= width else outcome[: width - 1] + "…"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpu-limit", type=int, default=2, help="CPU seconds for a run without caps")
    parser.add_argument(
        "--memory-limit", type=int, default=3072, help="MB of address space, runs without caps"
    )
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    parser.add_argument("--only", default="", help="run only the attacks whose name contains this")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as directory:
        jobs = []
        for index, (name, kind, build) in enumerate(ATTACKS):
            if args.only.lower() not in name.lower():
                continue
            data = build()
            path = Path(directory) / f"attack{index}"
            path.write_bytes(data)
            jobs.append((name, kind, path, len(data)))
        workers = max(2, os.cpu_count() or 2)
        with ThreadPoolExecutor(max_workers=workers) as pool:
            # The slow runs (without caps) first, so the two cores stay busy to the end.
            futures = [
                (job, mode, pool.submit(run_child, job[1], mode, job[2], args.cpu_limit, args.memory_limit))
                for mode in ("before", "after")
                for job in jobs
            ]
            results: dict[tuple[str, str], Run] = {(job[0], mode): f.result() for job, mode, f in futures}

    print(f"Python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} CPUs;"
          f" runs without caps limited to {args.cpu_limit} s CPU and {args.memory_limit} MB")  # fmt: skip
    header = ("attack", "bytes", "without caps", "CPU s", "RSS MB", "with caps", "CPU s", "RSS MB")
    rows = []
    for name, _, _, size in jobs:
        before, after = results[(name, "before")], results[(name, "after")]
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
