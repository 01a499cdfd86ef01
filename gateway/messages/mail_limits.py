"""Bounding what a mail can cost before the ``email`` package parses any of it.

CPython's ``email`` parser with ``policy.default`` is correct but not cheap, and a
mail's size limit does not bound its cost (figures from ``benchmarks/attacks.py``):

- a Subject, From display name or Message-ID of tens of thousands of RFC 2047
  encoded words makes the header parser use memory quadratically: 10,000 words need
  about 1 GB, 80,000 got the process killed, and a restarted daemon read the same
  file again, in a loop;
- 5,000 parameters (or RFC 2231 segments) in one Content-Type cost 3 to 8 s of CPU;
- 80,000 MIME parts cost about 50 s, and the feed parser's work per line grows with
  the number of enclosing multiparts (2 million short lines 20 levels deep: 10 s).

So ``scan_mail`` reads the raw bytes first, with nothing but byte searches and a
loop over header lines, and raises ``MailError`` with a non-personal reason at the
first cap exceeded: lines in the mail, lines that could be MIME boundaries, and for
every header section (the mail's, each part's, each attached message's): its size,
line length, number of fields, size of a field, RFC 2047 encoded words (``=?``) and
parameters of Content-* fields, per field and in total. Following the boundaries
declared in Content-Type, it counts parts and multipart nesting too.

Header lines are recognised exactly as ``email.feedparser`` does (its ``headerRE``;
lines end at CRLF, CR or LF), so a section ends where the parser's does. Where the
scan is unsure it errs toward checking more: the lines after *every* line that
starts with "--" are checked as a header section, not only after real boundaries.
``gateway.messages.mail`` checks parts and depth again on the parsed tree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = ["MailError", "MailLimits", "MailShape", "scan_mail"]


class MailError(ValueError):
    """The bytes cannot be read as a mail; ``str(e)`` is one safe line."""


@dataclass(frozen=True)
class MailLimits:
    """Caps for one mail. Real mail (a letter with attachments, a forwarded thread,
    a staff command) stays far below every one of them."""

    max_lines: int = 500_000  # a 25 MB mail of base64 has about 340,000
    max_boundary_lines: int = 1_000  # lines starting with "--"
    max_parts: int = 250
    max_depth: int = 10
    max_header_bytes: int = 64 * 1024  # one header section
    max_total_header_bytes: int = 256 * 1024  # all sections together
    max_header_line: int = 8 * 1024  # RFC 5322 allows 998
    max_fields: int = 500  # in one section
    max_field_bytes: int = 16 * 1024  # one field, its folded lines together
    max_encoded_words: int = 200  # in one field
    max_total_encoded_words: int = 1_000
    max_parameters: int = 32  # in one Content-* field
    max_total_parameters: int = 500

    @classmethod
    def unlimited(cls) -> MailLimits:
        """No caps at all: for the benchmark's "before" figures, never in production."""
        big = 1 << 62
        return cls(*([big] * 13))


@dataclass
class MailShape:
    """What the scan counted (for tests and the benchmark)."""

    lines: int = 0
    boundary_lines: int = 0
    parts: int = 0
    depth: int = 0
    sections: int = 0
    header_bytes: int = 0
    encoded_words: int = 0
    parameters: int = 0


_EOL = re.compile(rb"\r\n|\r|\n")
_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[\t ]")  # email.feedparser.headerRE
_BLANK_LINE = re.compile(rb"(?:\r\n|\r(?!\n)|\n){2}")  # a CRLF is one line break, not two
_SHOWN_NAME = re.compile(rb"[A-Za-z][A-Za-z\-]{0,39}")
_BOUNDARY = re.compile(rb'(?i)(?:^|;)\s*boundary\s*=\s*(?:"([^"\r\n]*)"|([^\s;"]+))')


def scan_mail(raw: bytes, limits: MailLimits) -> MailShape:
    """Raise ``MailError`` if ``raw`` exceeds a cap; otherwise return what it counted."""
    shape = MailShape()
    shape.lines = raw.count(b"\n") + raw.count(b"\r") - raw.count(b"\r\n")
    if shape.lines > limits.max_lines:
        raise MailError(f"too many lines ({shape.lines}, limit {limits.max_lines})")
    shape.boundary_lines = raw.count(b"\n--") + raw.count(b"\r--") + int(raw.startswith(b"--"))
    if shape.boundary_lines > limits.max_boundary_lines:
        raise MailError(
            f"too many MIME boundary lines ({shape.boundary_lines}, limit {limits.max_boundary_lines})"
        )
    _Scanner(raw, limits, shape).run()
    return shape


@dataclass
class _Multipart:
    boundary: bytes
    digest: bool  # in multipart/digest a part without Content-Type is a message


@dataclass
class _Scanner:
    raw: bytes
    limits: MailLimits
    shape: MailShape
    stack: list[_Multipart] = field(default_factory=list)
    done: int = 0  # where the last header section scanned ended

    def run(self) -> None:
        self._message(0, default_type=b"text/plain")
        for start in _dash_lines(self.raw):
            if start < self.done:
                continue  # inside a header section already checked
            eol = _EOL.search(self.raw, start)
            line_end, next_line = (eol.start(), eol.end()) if eol else (len(self.raw), len(self.raw))
            token = self.raw[start + 2 : line_end].rstrip(b" \t")
            default = self._delimiter(token)
            if default is not None:
                self._message(next_line, default)

    def _delimiter(self, token: bytes) -> bytes | None:
        """Follow one "--" line; the default type of what follows, None if nothing does."""
        for index in range(len(self.stack) - 1, -1, -1):
            multipart = self.stack[index]
            if token == multipart.boundary + b"--":
                del self.stack[index:]  # the epilogue follows: no headers
                return None
            if token == multipart.boundary:
                del self.stack[index + 1 :]  # an outer boundary ends the inner multiparts
                self.shape.parts += 1
                if self.shape.parts > self.limits.max_parts:
                    raise MailError(f"too many MIME parts (more than {self.limits.max_parts})")
                return b"message/rfc822" if multipart.digest else b"text/plain"
        return b"text/plain"  # not a boundary we know of: check what follows anyway

    def _message(self, start: int, default_type: bytes) -> None:
        """Check the header section at ``start``, and those of any messages inside."""
        chain = 0
        while True:
            end, content_type = self._section(start)
            kind = (content_type or default_type).strip().lower()
            if kind.startswith(b"multipart/"):
                found = _BOUNDARY.search(content_type or b"")
                if found is not None:
                    boundary = (found.group(1) if found.group(1) is not None else found.group(2)).rstrip()
                    self.stack.append(_Multipart(boundary, kind.startswith(b"multipart/digest")))
                    self.shape.depth = max(self.shape.depth, len(self.stack))
                    if len(self.stack) > self.limits.max_depth:
                        raise MailError(f"MIME nesting too deep (more than {self.limits.max_depth} levels)")
                return
            if not kind.startswith(b"message/"):
                return
            chain += 1  # an attached message: its own header section follows
            if chain > self.limits.max_depth:
                raise MailError(f"MIME nesting too deep (more than {self.limits.max_depth} levels)")
            start, default_type = end, b"text/plain"

    def _section(self, start: int) -> tuple[int, bytes | None]:
        """Check one header section; return where its body starts and its Content-Type."""
        limits, raw = self.limits, self.raw
        where = "header section" if start == 0 else "MIME part header section"
        pos, fields, content_type = start, 0, None
        lines: list[bytes] = []
        while pos < len(raw):
            eol = _EOL.search(raw, pos, pos + limits.max_header_line + 2)
            line_end, next_line = (eol.start(), eol.end()) if eol else (len(raw), len(raw))
            if eol is None and len(raw) - pos > limits.max_header_line + 1:
                line_end = next_line = pos + limits.max_header_line + 1  # too long, measured below
            line = raw[pos:line_end]
            if not line:
                pos = next_line  # the blank line that ends the section
                break
            if not _HEADER_LINE.match(line):
                break  # the body starts here, without a blank line (as the parser sees it)
            if len(line) > limits.max_header_line:
                size = _line_length(raw, pos)
                raise MailError(f"header line too long ({size} bytes, limit {limits.max_header_line})")
            if line[:1] not in (b" ", b"\t") and lines:
                content_type = self._field(lines, content_type)
                lines = []
            if line[:1] not in (b" ", b"\t"):
                fields += 1
                if fields > limits.max_fields:
                    raise MailError(f"too many fields in the {where} (more than {limits.max_fields})")
            lines.append(line)
            pos = next_line
            if pos - start > limits.max_header_bytes:
                blank = _BLANK_LINE.search(raw, start)
                size = (blank.end() if blank else len(raw)) - start
                raise MailError(f"{where} too large ({size} bytes, limit {limits.max_header_bytes})")
        if lines:
            content_type = self._field(lines, content_type)
        self.done = max(self.done, pos)
        self.shape.sections += 1
        self.shape.header_bytes += pos - start
        if self.shape.header_bytes > limits.max_total_header_bytes:
            raise MailError(
                f"header sections too large in total (more than {limits.max_total_header_bytes} bytes)"
            )
        return pos, content_type

    def _field(self, lines: list[bytes], content_type: bytes | None) -> bytes | None:
        """Check one (folded) field; return the section's Content-Type value so far."""
        limits, shape = self.limits, self.shape
        value = b"".join(lines)
        name, colon, rest = value.partition(b":")
        shown = name.decode("ascii") if colon and _SHOWN_NAME.fullmatch(name) else "a header field"
        if len(value) > limits.max_field_bytes:
            raise MailError(f"{shown} too large ({len(value)} bytes, limit {limits.max_field_bytes})")
        words = value.count(b"=?")
        if words > limits.max_encoded_words:
            raise MailError(f"too many encoded words in {shown} ({words}, limit {limits.max_encoded_words})")
        shape.encoded_words += words
        if shape.encoded_words > limits.max_total_encoded_words:
            raise MailError(f"too many encoded words in all (more than {limits.max_total_encoded_words})")
        lowered = name.strip().lower()
        if colon and lowered.startswith(b"content-"):
            parameters = value.count(b";")
            if parameters > limits.max_parameters:
                raise MailError(
                    f"too many parameters in {shown} ({parameters}, limit {limits.max_parameters})"
                )
            shape.parameters += parameters
            if shape.parameters > limits.max_total_parameters:
                raise MailError(f"too many MIME parameters in all (more than {limits.max_total_parameters})")
            if lowered == b"content-type" and content_type is None:
                return rest
        return content_type


def _dash_lines(raw: bytes) -> list[int]:
    """Where the lines that start with "--" start, in order.

    Byte searches, not a regex: a pattern that starts with a look-behind is tried at
    every position (a second for 16 MB). ``scan_mail`` has already checked that there
    are at most ``max_boundary_lines`` of them.
    """
    found = [0] if raw.startswith(b"--") else []
    for needle in (b"\n--", b"\r--"):  # "\r\n--" is found by the first
        index = raw.find(needle)
        while index != -1:
            found.append(index + 1)
            index = raw.find(needle, index + 1)
    return sorted(found)


def _line_length(raw: bytes, start: int) -> int:
    eol = _EOL.search(raw, start)
    return (eol.start() if eol else len(raw)) - start
