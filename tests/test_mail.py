"""Reading inbound mail: letters, XML orders, signed mail, and anything hostile."""

from __future__ import annotations

import base64
import re
import time
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.messages.mail import BODY_LIMIT, MailContent, MailError, parse_mail
from schemas import EXAMPLES_DIR

ORDER_XML = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()


def letter(body: str = "Hei,\r\nvedlagt følger ordre.\r\n\r\nHilsen politiet\r\n") -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Testdal politidistrikt <Post.Testdal@Example.ORG>"
    message["To"] = "russak@example.org"
    message["Subject"] = "Pålegg om oppmøte [RUS-2026-0042]"
    message["Message-ID"] = "<ordre-1@example.org>"
    message["In-Reply-To"] = "<varsel-7@example.org>"
    message.set_content(body)
    return message


def parse(message: EmailMessage | bytes) -> MailContent:
    raw = message if isinstance(message, bytes) else message.as_bytes()
    return parse_mail(raw)


def test_plain_letter() -> None:
    mail = parse(letter())
    assert mail.sender == "post.testdal@example.org"
    assert mail.subject == "Pålegg om oppmøte [RUS-2026-0042]"
    assert mail.message_id == "<ordre-1@example.org>"
    assert mail.in_reply_to == "<varsel-7@example.org>"
    assert mail.body_text == "Hei,\nvedlagt følger ordre.\n\nHilsen politiet\n"
    assert mail.xml_attachments == ()
    assert mail.other_attachments == ()
    assert mail.defects == ()


def test_letter_with_xml_and_pdf_attachments() -> None:
    message = letter()
    message.add_attachment(ORDER_XML, maintype="application", subtype="xml", filename="ordre.xml")
    message.add_attachment(b"%PDF-1.7\n", maintype="application", subtype="pdf", filename="brev.pdf")
    mail = parse(message)
    assert mail.xml_attachments == (ORDER_XML,)
    assert mail.other_attachments == ("brev.pdf",)
    assert mail.body_text.startswith("Hei,\nvedlagt")


def test_xml_found_by_name_and_by_namespace_sniff() -> None:
    message = letter()
    message.add_attachment(ORDER_XML, maintype="application", subtype="octet-stream", filename="ORDRE.XML")
    message.add_attachment(ORDER_XML, maintype="application", subtype="octet-stream")
    message.add_attachment(b"\x00\x01", maintype="application", subtype="octet-stream")
    mail = parse(message)
    assert mail.xml_attachments == (ORDER_XML, ORDER_XML)
    assert mail.other_attachments == ("(unnamed application/octet-stream)",)


def test_text_xml_attachment_with_rfc2231_filename() -> None:
    message = letter()
    message.add_attachment(
        ORDER_XML.decode(), subtype="xml", filename=("utf-8", "", "pålegg.xml"), charset="utf-8"
    )
    mail = parse(message)
    assert len(mail.xml_attachments) == 1
    assert mail.xml_attachments[0].replace(b"\r\n", b"\n") == ORDER_XML


def test_xml_as_the_whole_body() -> None:
    message = EmailMessage()
    message["From"] = "altinn@example.org"
    message["Subject"] = "Ordre"
    message.set_content(ORDER_XML, maintype="application", subtype="xml")
    mail = parse(message)
    assert mail.xml_attachments == (ORDER_XML,)
    assert mail.body_text == ""
    assert mail.other_attachments == ()


def test_html_alternative_is_not_an_attachment() -> None:
    message = letter("MØTT 3.12.2026\n")
    message.add_alternative("<p>MØTT 3.12.2026</p>", subtype="html")
    mail = parse(message)
    assert mail.body_text == "MØTT 3.12.2026\n"
    assert mail.other_attachments == ()


def test_html_only_mail_becomes_text_lines() -> None:
    message = EmailMessage()
    message["From"] = "ansatt@example.org"
    message["Subject"] = "Re: [RUS-2026-0042]"
    message.set_content(
        "<html><head><title>t</title><style>p {color: red}</style>"
        "<script>alert('x')</script></head><body><p>IKKE&nbsp;MØTT 03.12</p>"
        "<div>Hilsen<br>Kari</div><!-- kommentar --></body></html>",
        subtype="html",
    )
    mail = parse(message)
    lines = [line.strip() for line in mail.body_text.splitlines() if line.strip()]
    assert lines == ["IKKE MØTT 03.12", "Hilsen", "Kari"]
    assert "alert" not in mail.body_text
    assert "color" not in mail.body_text
    assert "kommentar" not in mail.body_text


def test_html_with_external_entities_is_inert() -> None:
    message = EmailMessage()
    message["From"] = "ansatt@example.org"
    message.set_content(
        '<!DOCTYPE html [<!ENTITY x SYSTEM "file:///etc/passwd">]><p>a&x;b</p>', subtype="html"
    )
    mail = parse(message)
    assert "root:" not in mail.body_text


SIGNED = (
    b"""\
From: Testdal politidistrikt <post.testdal@example.org>
To: russak@example.org
Subject: Signert ordre
Message-ID: <signert-1@example.org>
MIME-Version: 1.0
Content-Type: multipart/signed; protocol="application/pkcs7-signature"; micalg=sha-256;
 boundary="sig-boundary"

This is an S/MIME signed message

--sig-boundary
Content-Type: multipart/mixed; boundary="inner-boundary"

--inner-boundary
Content-Type: text/plain; charset=utf-8
Content-Transfer-Encoding: 8bit

Ordre vedlagt.
--inner-boundary
Content-Type: application/xml; name="ordre.xml"
Content-Disposition: attachment; filename="ordre.xml"
Content-Transfer-Encoding: base64

%(xml)s
--inner-boundary--

--sig-boundary
Content-Type: application/pkcs7-signature; name="smime.p7s"
Content-Disposition: attachment; filename="smime.p7s"
Content-Transfer-Encoding: base64

MIAGCSqGSIb3DQEHAqCAMIACAQExDzANBglghkgBZQMEAgEFADCABgkqhkiG9w0BBwEAAA==
--sig-boundary--
""".replace(b"\n", b"\r\n")
    % {b"xml": base64.encodebytes(ORDER_XML).strip()}
)


def test_smime_signed_mail_reads_its_content() -> None:
    mail = parse(SIGNED)
    assert mail.sender == "post.testdal@example.org"
    assert mail.xml_attachments == (ORDER_XML,)
    assert mail.body_text.strip() == "Ordre vedlagt."
    assert mail.other_attachments == ()  # the signature is not an attachment


def test_pgp_signed_mail_reads_its_content() -> None:
    raw = (
        b"From: a@example.org\r\nSubject: pgp\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/signed; micalg=pgp-sha256; protocol="application/pgp-signature";'
        b' boundary="b"\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nSTATUS\r\n--b\r\n'
        b"Content-Type: application/pgp-signature\r\n\r\n-----BEGIN PGP SIGNATURE-----\r\n"
        b"-----END PGP SIGNATURE-----\r\n--b--\r\n"
    )
    mail = parse(raw)
    assert mail.body_text.strip() == "STATUS"
    assert mail.other_attachments == ()


@pytest.mark.parametrize(
    "content_type",
    [
        b'application/pkcs7-mime; smime-type=enveloped-data; name="smime.p7m"',
        b'application/x-pkcs7-mime; smime-type=signed-data; name="smime.p7m"',
        b'multipart/encrypted; protocol="application/pgp-encrypted"; boundary="e"',
    ],
)
def test_encrypted_or_opaque_mail_is_refused(content_type: bytes) -> None:
    raw = (
        b"From: a@example.org\r\nSubject: hemmelig\r\nMIME-Version: 1.0\r\n"
        b"Content-Type: " + content_type + b"\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"MIAGCSqGSIb3DQEHA6CAMIACAQAxggE=\r\n"
    )
    with pytest.raises(MailError, match="encrypted or opaque-signed mail cannot be read"):
        parse_mail(raw)


def test_rfc2047_subject_with_norwegian_letters() -> None:
    raw = (
        b"From: =?utf-8?q?R=C3=A5dgiver?= <radgiver@example.org>\r\n"
        b"Subject: =?utf-8?b?U3ZhcjogbcO4dGUgZm9yIMOmw7jDpSBb?=\r\n"
        b" =?iso-8859-1?q?RUS-2026-0042=5D_=E6=F8=E5?=\r\n"
        b"\r\nHJELP\r\n"
    )
    mail = parse_mail(raw)
    assert mail.subject == "Svar: møte for æøå [RUS-2026-0042] æøå"
    assert mail.sender == "radgiver@example.org"
    assert mail.body_text == "HJELP\n"


def test_unknown_charset_is_decoded_with_replacement() -> None:
    raw = (
        b"From: a@example.org\r\nContent-Type: text/plain; charset=x-no-such-charset\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nM\xc3\x98TT \xff\r\n"
    )
    mail = parse_mail(raw)
    assert mail.body_text == "MØTT \ufffd\n"
    assert any("undecodable" in d for d in mail.defects)


def test_missing_from_gives_no_sender() -> None:
    message = letter()
    del message["From"]
    mail = parse(message)
    assert mail.sender is None
    assert "no From header" in mail.defects
    assert mail.subject


@pytest.mark.parametrize(
    "header",
    [
        b"From: <<<@@>>>\r\n",
        b"From: ikke en adresse\r\n",
        b"From: \r\n",
        b"From: a@example.org, b@example.org\r\n",
        b"From: a@example.org\r\nFrom: b@example.org\r\n",
        b"From: undisclosed-recipients:;\r\n",
    ],
)
def test_doubtful_from_gives_no_sender(header: bytes) -> None:
    mail = parse_mail(header + b"Subject: x\r\n\r\nSTATUS\r\n")
    assert mail.sender is None
    assert mail.defects  # the reason is recorded


def test_body_is_capped() -> None:
    mail = parse(letter("A" * (BODY_LIMIT + 5000)))
    assert len(mail.body_text) == BODY_LIMIT
    assert "body text truncated" in mail.defects


def test_huge_mail_is_refused_before_parsing() -> None:
    raw = letter().as_bytes() + b"x" * 26_214_400
    started = time.monotonic()
    with pytest.raises(MailError, match=r"mail too large \(\d+ bytes, limit 26214400\)"):
        parse_mail(raw)
    assert time.monotonic() - started < 1
    with pytest.raises(MailError, match="limit 100"):
        parse_mail(letter().as_bytes(), max_bytes=100)


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n", b"\x00\xff\xfe garbage \x01\x02", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"],
)
def test_garbage_is_refused(raw: bytes) -> None:
    with pytest.raises(MailError):
        parse_mail(raw)


def test_not_bytes_is_refused() -> None:
    with pytest.raises(MailError, match="must be bytes"):
        parse_mail("From: a@example.org\r\n\r\nx")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("depth", "reason"),
    [(3000, "too many MIME boundary lines (6000, limit 1000)"), (400, "MIME nesting too deep")],
)
def test_deeply_nested_multipart_is_refused_before_parsing(depth: int, reason: str) -> None:
    parts = [b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\n--b%d\r\n' % (i, i) for i in range(depth)]
    closing = [b"\r\n--b%d--\r\n" % i for i in reversed(range(depth))]
    raw = (
        b"From: a@example.org\r\nMIME-Version: 1.0\r\n"
        + b"".join(parts)
        + b"Content-Type: text/plain\r\n\r\nhei"
        + b"".join(closing)
    )
    with pytest.raises(MailError, match=re.escape(reason)):
        parse_mail(raw)


def test_repr_shows_no_content() -> None:
    message = letter("Personopplysninger her")
    message.add_attachment(ORDER_XML, maintype="application", subtype="xml", filename="ordre.xml")
    shown = repr(parse(message))
    assert "Personopplysninger" not in shown
    assert "Fodselsnummer" not in shown
    assert "post.testdal" not in shown
    assert "xml_attachments=1" in shown


# ------------------------------------------------------------------ properties


def _rich_mail() -> bytes:
    message = letter()
    message.replace_header("Message-ID", make_msgid(domain="example.org"))
    message.add_alternative("<p>Hei</p>", subtype="html")
    message.add_attachment(ORDER_XML, maintype="application", subtype="xml", filename="ordre.xml")
    message.add_attachment(b"%PDF", maintype="application", subtype="pdf", filename="brev.pdf")
    return message.as_bytes() + b"\r\n" + SIGNED


RICH = _rich_mail()


def _outcome(raw: bytes) -> None:
    try:
        mail = parse_mail(raw)
    except MailError as exc:
        assert str(exc).strip()
        assert "\n" not in str(exc)
    else:
        assert isinstance(mail.body_text, str)
        assert len(mail.body_text) <= BODY_LIMIT
        assert all(isinstance(x, bytes) for x in mail.xml_attachments)
        assert mail.sender is None or (mail.sender == mail.sender.lower() and "@" in mail.sender)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=2000))
def test_random_bytes_give_content_or_mail_error(raw: bytes) -> None:
    _outcome(raw)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cuts=st.lists(
        st.tuples(st.integers(0, len(RICH)), st.integers(0, 40), st.binary(max_size=12)),
        min_size=1,
        max_size=6,
    )
)
def test_mutated_real_mails_give_content_or_mail_error(
    cuts: list[tuple[int, int, bytes]],
) -> None:
    raw = RICH
    for position, length, replacement in cuts:
        raw = raw[:position] + replacement + raw[position + length :]
    _outcome(raw)


@settings(max_examples=200, deadline=None)
@given(
    header=st.sampled_from(["From", "Subject", "Content-Type", "Message-ID", "In-Reply-To"]),
    value=st.text(max_size=200),
)
def test_arbitrary_header_values_give_content_or_mail_error(header: str, value: str) -> None:
    raw = f"{header}: {value}\r\nFrom: a@example.org\r\n\r\nbody\r\n".encode("utf-8", errors="surrogatepass")
    _outcome(raw)
