"""Mail that costs far more to parse than its size suggests.

Each attack is built here and run through the real ``parse_mail``; the main ones also
through intake (the mail is quarantined with the reason, once, not re-read in a loop)
and through ``russak ingest``. Without the caps, a 10,000-word Subject needed about
1 GB, 80,000 words got the daemon killed, and 80,000 parts took about 50 s of CPU
(``benchmarks/attacks.py`` measures both sides).
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from gateway.cli import main
from gateway.clock import SimulatedClock
from gateway.context import Gateway
from gateway.intake import pipeline
from gateway.messages.budget import cpu_budget
from gateway.messages.mail import BODY_LIMIT, MailContent, MailError, parse_mail
from gateway.messages.mail_limits import MailLimits, scan_mail
from gateway.models import QuarantineEntry
from gateway.ports import RawMessage
from schemas import EXAMPLES_DIR

WORD = b"=?utf-8?q?R=C3=A5d?="
ORDER_XML = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()
ELEVEN_DIGITS = re.compile(r"\d{11}")


def header_bomb(name: bytes, words: int, *, folded: bool) -> bytes:
    """A mail whose ``name`` header is ``words`` encoded words, on one line or folded."""
    value = (b"\r\n " if folded else b" ").join([WORD] * words)
    if name == b"From":
        return b"From: " + value + b" <a@example.org>\r\nSubject: x\r\n\r\nhei\r\n"
    return b"From: a@example.org\r\n" + name + b": " + value + b"\r\n\r\nhei\r\n"


def multipart(parts: list[bytes], boundary: bytes = b"b", subtype: bytes = b"mixed") -> bytes:
    """A multipart body (with its Content-Type line) around already built ``parts``."""
    head = b"Content-Type: multipart/" + subtype + b'; boundary="' + boundary + b'"\r\n\r\n'
    inner = b"".join(b"--" + boundary + b"\r\n" + part + b"\r\n" for part in parts)
    return head + inner + b"--" + boundary + b"--\r\n"


def mime_mail(body: bytes) -> bytes:
    return b"From: a@example.org\r\nSubject: x\r\nMIME-Version: 1.0\r\n" + body


TEXT_PART = b"Content-Type: text/plain\r\n\r\nx"


def refused(raw: bytes, **kwargs: object) -> str:
    """Parse ``raw``, expect MailError within a second, and return its checked message."""
    started = time.thread_time()
    with pytest.raises(MailError) as info:
        parse_mail(raw, **kwargs)  # type: ignore[arg-type]
    assert time.thread_time() - started < 1.0, "the attack was not stopped early"
    message = str(info.value)
    assert "\n" not in message and message.strip()
    assert ELEVEN_DIGITS.search(message) is None
    return message


# ------------------------------------------------------------------ header bombs


def header_line(raw: bytes, name: bytes) -> bytes:
    start = raw.index(name + b": ")
    return raw[start : raw.index(b"\r\n", start)]


@pytest.mark.parametrize("name", [b"Subject", b"From", b"Message-ID"])
@pytest.mark.parametrize("words", [10_000, 80_000])
def test_header_bomb_on_one_line_is_refused_by_its_length(name: bytes, words: int) -> None:
    raw = header_bomb(name, words, folded=False)
    length = len(header_line(raw, name))
    assert refused(raw) == f"header line too long ({length} bytes, limit 8192)"


@pytest.mark.parametrize("name", [b"Subject", b"From", b"Message-ID"])
@pytest.mark.parametrize(
    ("words", "reason"),
    [
        (10_000, "header section too large ({section} bytes, limit 65536)"),
        (80_000, "header section too large ({section} bytes, limit 65536)"),
        (2_000, "{name} too large ({field} bytes, limit 16384)"),  # the section is under 64 KiB
        (300, "too many encoded words in {name} (300, limit 200)"),
    ],
)
def test_folded_header_bomb_is_refused_before_the_email_parser_sees_it(
    name: bytes, words: int, reason: str
) -> None:
    raw = header_bomb(name, words, folded=True)
    section = raw.index(b"\r\n\r\n") + 4
    start = raw.index(name + b": ")
    field = len(raw[start : raw.index(b"\r\n", raw.rindex(WORD))].replace(b"\r\n", b""))
    assert refused(raw) == reason.format(name=name.decode(), section=section, field=field)


def test_encoded_words_are_capped_across_headers_too() -> None:
    fields = b"".join(b"X-Note-%c: " % (65 + i) + b"\r\n ".join([WORD] * 199) + b"\r\n" for i in range(6))
    raw = b"From: a@example.org\r\n" + fields + b"\r\nhei\r\n"
    assert refused(raw) == "too many encoded words in all (more than 1000)"


def test_many_header_fields_are_refused() -> None:
    raw = b"From: a@example.org\r\n" + b"X-A: b\r\n" * 600 + b"\r\nhei\r\n"
    assert refused(raw) == "too many fields in the header section (more than 500)"


def test_a_field_name_is_named_only_when_it_is_a_plain_word() -> None:
    raw = b"From: a@example.org\r\nX-01018012345: " + b"\r\n ".join([WORD] * 300) + b"\r\n\r\nx"
    assert refused(raw) == "too many encoded words in a header field (300, limit 200)"


def test_header_bomb_stays_small_in_a_memory_capped_process() -> None:
    """80,000 words killed the daemon; now a 512 MiB address-space cap is plenty."""
    script = r"""
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, (512 << 20, 512 << 20))
from gateway.messages.mail import MailError, parse_mail
word = b"=?utf-8?q?R=C3=A5d?="
for sep in (b" ", b"\r\n "):
    for name in (b"Subject", b"Message-ID"):
        raw = b"From: a@example.org\r\n" + name + b": " + sep.join([word] * 80_000) + b"\r\n\r\nx"
        try:
            parse_mail(raw)
        except MailError as exc:
            print(exc)
        else:
            raise SystemExit("accepted")
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=Path(__file__).parent.parent,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(result.stdout.splitlines()) == 4


# -------------------------------------------------------------- MIME structure


def test_mime_flood_of_80000_parts_is_refused_by_counting_lines() -> None:
    raw = mime_mail(multipart([TEXT_PART] * 80_000))
    assert refused(raw) == "too many MIME boundary lines (80001, limit 1000)"


def test_more_parts_than_allowed_within_the_boundary_line_count() -> None:
    raw = mime_mail(multipart([TEXT_PART] * 300))
    assert refused(raw) == "too many MIME parts (more than 250)"


def test_nesting_deeper_than_allowed_is_refused_before_parsing() -> None:
    body = TEXT_PART
    for level in range(11):
        body = multipart([body], boundary=b"b%d" % level)
    assert refused(mime_mail(body)) == "MIME nesting too deep (more than 10 levels)"


def test_a_chain_of_attached_messages_counts_as_nesting() -> None:
    raw = b"From: a@example.org\r\n" + b"Content-Type: message/rfc822\r\n\r\n" * 12 + b"Subject: x\r\n\r\nx"
    assert refused(raw) == "MIME nesting too deep (more than 10 levels)"


def test_nesting_through_attached_messages_is_counted_on_the_parsed_tree() -> None:
    """Multiparts inside attached messages: each is only one boundary deep for the byte
    scan, but the tree is 12 levels deep, and the walk counts every level."""
    body = TEXT_PART
    for level in range(6):
        body = b"Content-Type: message/rfc822\r\n\r\nSubject: x\r\n" + multipart([body], b"b%d" % level)
    assert refused(mime_mail(multipart([body], b"outer"))) == "MIME nesting too deep (more than 10 levels)"


def test_too_many_lines_are_refused() -> None:
    raw = b"From: a@example.org\r\nSubject: x\r\n\r\n" + b"x\n" * 600_000
    assert refused(raw) == "too many lines (600003, limit 500000)"


def test_part_headers_are_checked_like_the_mails_own() -> None:
    bomb = b"Content-Type: application/pdf\r\nContent-Disposition: attachment; filename=" + b"\r\n ".join(
        [WORD] * 300
    )
    assert "too many encoded words in Content-Disposition (300" in refused(mime_mail(multipart([bomb])))
    params = b"Content-Type: text/plain; " + b"; ".join(b"a%d*=utf-8''x" % i for i in range(100))
    assert refused(mime_mail(multipart([params + b"\r\n\r\nx"]))) == (
        "too many parameters in Content-Type (100, limit 32)"
    )
    big = b"Content-Type: text/plain\r\n" + b"X-Pad: " + b"a" * 8000 + b"\r\n" * 1
    many = mime_mail(multipart([big * 9 + b"\r\nx"]))
    assert "MIME part header section too large (" in refused(many)


def test_parameters_are_capped_across_parts() -> None:
    part = b"Content-Type: text/plain; " + b"; ".join(b"a%d=x" % i for i in range(30)) + b"\r\n\r\nx"
    assert refused(mime_mail(multipart([part] * 20))) == "too many MIME parameters in all (more than 500)"


def test_headers_of_an_attached_message_are_checked() -> None:
    inner = b"Content-Type: message/rfc822\r\n\r\nFrom: b@example.org\r\nSubject: " + b"\r\n ".join(
        [WORD] * 300
    )
    assert "too many encoded words in Subject (300" in refused(mime_mail(multipart([inner + b"\r\n\r\nx"])))
    # in a digest a part without Content-Type is an attached message too
    digest = b"\r\nSubject: " + b"\r\n ".join([WORD] * 300) + b"\r\n\r\nx"
    raw = mime_mail(multipart([digest], subtype=b"digest"))
    assert "too many encoded words in Subject (300" in refused(raw)


def test_caps_can_be_lifted_and_the_budget_turned_off() -> None:
    raw = header_bomb(b"Subject", 300, folded=True)
    mail = parse_mail(raw, limits=MailLimits(max_encoded_words=1_000), cpu_seconds=None)
    assert mail.subject == "Råd" * 300  # adjacent encoded words join without a space


def html_mail(html: bytes) -> bytes:
    return b"From: a@example.org\r\nSubject: x\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html


@pytest.mark.parametrize("attribute", [b'a%d="1"', b"a%d", b'a%d="<"', b"a%d='x<y>z'", b"a%d=<"])
def test_html_body_with_an_attribute_flood_is_read_quickly(attribute: bytes) -> None:
    """libxml2's HTML parser compares each attribute with all before it on the tag:
    40,000 took 10 s. Attributes never reach the text, so none reaches the parser."""
    attributes = b" ".join(attribute % i if b"%d" in attribute else attribute for i in range(40_000))
    flood = b"<p " + attributes + b">M\xc3\x98TT 3.12.2026</p>"
    started = time.thread_time()
    mail = parse_mail(html_mail(flood))
    assert time.thread_time() - started < 1.0
    if len(flood) < 500_000 and b"=<" not in flood:  # else the text is past the cut, or markup
        assert mail.body_text.strip() == "MØTT 3.12.2026"


@pytest.mark.parametrize(
    "html",
    [
        b"<a" * 200_000,
        b'<p a="' * 100_000,
        b'<a "<b ' * 60_000,
        b"<!--" * 100_000,
        b"<!" * 200_000,
        b"</" * 200_000,
        b"<a '" + b"<b " * 150_000,
        b"<" * 400_000,
    ],
    ids=["tag starts", "unclosed quotes", "nested quotes", "comments", "declarations", "end tags",
         "one open quote", "bare <"],
)  # fmt: skip
def test_odd_html_is_tokenized_in_linear_time(html: bytes) -> None:
    started = time.thread_time()
    parse_mail(html_mail(html + b"<p>STATUS</p>"))
    assert time.thread_time() - started < 1.0


def test_a_huge_html_body_is_read_only_in_part() -> None:
    started = time.thread_time()
    mail = parse_mail(html_mail(b"<div>" * 200_000 + b"<p>x</p>" * 2_000_000))
    assert time.thread_time() - started < 2.0
    assert "html body truncated" in mail.defects
    assert 0 < len(mail.body_text) <= BODY_LIMIT


def test_rebuilding_html_from_bare_tags_keeps_the_text() -> None:
    html = (
        b"<html><head><style>p {color: red}</style></head><body>"
        b"<p class=MsoNormal style='font-family:\"Calibri\"'>IKKE&nbsp;M\xc3\x98TT 03.12</p>"
        b'<div><a href="https://example.org/?a=1&amp;b=2" title="a > b">Hilsen</a><br/>Kari</div>'
        b'<o:p></o:p><img src="data:image/png;base64,AAAA"></body></html>'
    )
    lines = [line.strip() for line in parse_mail(html_mail(html)).body_text.splitlines() if line.strip()]
    assert lines == ["IKKE MØTT 03.12", "Hilsen", "Kari"]


# ---------------------------------------------------------------- CPU budget


def test_a_parse_over_its_cpu_budget_is_refused() -> None:
    raw = mime_mail(multipart([TEXT_PART] * 50))
    message = refused(raw, cpu_seconds=1e-9)
    assert re.fullmatch(r"reading the mail took too long \(\d+\.\d\d s CPU, limit 1e-09 s\)", message)


def test_cpu_budget_keeps_the_blocks_own_error_and_can_be_off() -> None:
    ticks = iter([0.0, 5.0])
    with pytest.raises(MailError, match="own reason"), cpu_budget(1.0, MailError, "x", lambda: next(ticks)):
        raise MailError("own reason")
    ticks = iter([0.0, 0.5])
    with cpu_budget(1.0, MailError, "x", lambda: next(ticks)):
        pass
    with cpu_budget(None, MailError, "x", lambda: 1 / 0):
        pass
    ticks = iter([0.0, 3.25])
    overrun = re.escape("x took too long (3.25 s CPU, limit 1 s)")
    with pytest.raises(MailError, match=overrun), cpu_budget(1.0, MailError, "x", lambda: next(ticks)):
        pass


# ------------------------------------------------------- real mail still passes


def big_real_mail() -> bytes:
    """What a real, busy mail looks like: a long Norwegian subject and sender name,
    a long thread, many relays, signatures, an HTML alternative, a quoted reply with
    "--" lines and ten attachments."""
    message = EmailMessage()
    message["From"] = "Påtalejurist Åse Øvrebø-Ærlighetsen <ase.ovrebo@politiet.no>"
    message["To"] = ", ".join(f"Mottaker Ærlig {i} <m{i}@kommune.example>" for i in range(40))
    message["Subject"] = "Vedr. pålegg om oppmøte for samtale ved rådgivende enhet – " * 6
    message["Message-ID"] = "<ordre-1@politiet.no>"
    message["References"] = " ".join(f"<tråd-{i}@politiet.no>" for i in range(60)).replace("å", "a")
    for i in range(30):
        message["Received"] = (
            f"from relay{i}.example.org by mx{i}.example.org; Mon, 23 Nov 2026 09:00:00 +0000"
        )
    message["DKIM-Signature"] = "v=1; a=rsa-sha256; d=politiet.no; s=sel; h=from:to:subject; b=" + "A" * 400
    body = "Hei,\n\nvedlagt følger ordre.\n\n-- \nÅse\n\n-----Original Message-----\nFrom: x\nSubject: y\n"
    message.set_content(body * 20)
    message.add_alternative(f"<p>{body}</p>" * 20, subtype="html")
    message.add_attachment(ORDER_XML, maintype="application", subtype="xml", filename="pålegg om oppmøte.xml")
    for i in range(9):
        message.add_attachment(b"%PDF-1.7\n" + bytes(range(256)) * 400, maintype="application",
                               subtype="pdf", filename=f"vedlegg nummer {i} – særutskrift.pdf")  # fmt: skip
    return message.as_bytes()


def test_a_big_real_mail_stays_far_below_every_cap() -> None:
    raw = big_real_mail()
    shape = scan_mail(raw, MailLimits())
    limits = MailLimits()
    assert shape.encoded_words * 4 < limits.max_total_encoded_words
    assert shape.header_bytes * 4 < limits.max_total_header_bytes
    assert shape.parts * 10 < limits.max_parts and shape.depth * 3 <= limits.max_depth
    mail = parse_mail(raw)
    assert mail.sender == "ase.ovrebo@politiet.no"
    assert mail.xml_attachments == (ORDER_XML,)
    assert len(mail.other_attachments) == 9


# ------------------------------------------------------ through intake and CLI


def email_message(gw: Gateway, data: bytes) -> RawMessage:
    return RawMessage(
        channel="spool",
        external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        content=data,
        kind="email",
        received_at=gw.clock.now(),
    )


ATTACKS = {
    "subject bomb": (header_bomb(b"Subject", 80_000, folded=False), "header line too long"),
    "from bomb": (header_bomb(b"From", 10_000, folded=True), "header section too large"),
    "mime flood": (mime_mail(multipart([TEXT_PART] * 80_000)), "too many MIME boundary lines"),
}


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_intake_quarantines_the_attack_once(gw: Gateway, name: str) -> None:
    data, reason = ATTACKS[name]
    message = email_message(gw, data)
    result = pipeline.process(gw, message)
    assert result.outcome == "quarantined"
    assert result.reason is not None and result.reason.startswith(f"unreadable mail: {reason}")
    assert pipeline.process(gw, message).outcome == "duplicate"  # taken once, not re-read in a loop
    with gw.session() as session:
        reasons = session.scalars(select(QuarantineEntry.reason)).all()
    assert reasons == [result.reason]


def test_russak_ingest_quarantines_the_attacks(tmp_path: Path) -> None:
    site = CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "site")])
    assert site.exit_code == 0, site.output
    files = []
    for index, name in enumerate(sorted(ATTACKS)):
        path = tmp_path / f"attack{index}.eml"
        path.write_bytes(ATTACKS[name][0])
        files.append(str(path))
    clock = SimulatedClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    config = str(tmp_path / "site" / "russak.toml")
    started = time.monotonic()
    result = CliRunner().invoke(main, ["--config", config, "ingest", *files], obj=clock)
    assert time.monotonic() - started < 20
    lines = result.stdout.strip().splitlines()
    assert result.exit_code == 1  # something was quarantined
    for index, name in enumerate(sorted(ATTACKS)):
        assert lines[index].startswith(f"attack{index}.eml: quarantined unreadable mail: {ATTACKS[name][1]}")


def test_mail_content_is_unchanged_for_plain_mail() -> None:
    raw = b"From: a@example.org\r\nSubject: STATUS [RUS-2026-0001]\r\n\r\nSTATUS\r\n"
    mail = parse_mail(raw)
    assert isinstance(mail, MailContent)
    assert (mail.sender, mail.subject, mail.body_text) == (
        "a@example.org",
        "STATUS [RUS-2026-0001]",
        "STATUS\n",
    )
