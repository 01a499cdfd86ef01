"""The spool channel against real files: it is both a production channel and the fake
every other test relies on, so its promises are checked one by one."""

from __future__ import annotations

import email
import email.policy
import errno
import hashlib
import logging
import os
import re
import stat
import tempfile
import time
from datetime import UTC, date, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.spool import SpoolChannel, drop_file, safe_name
from gateway.clock import SimulatedClock
from gateway.domain.identifiers import synthetic_identity_number
from gateway.ports import (
    Attachment,
    InboundChannel,
    OutboundChannel,
    OutboundMessage,
    PermanentError,
    RawMessage,
    TransientError,
)

START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
ORDER = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<Oppmoteordre xmlns="urn:no:russak:oppmoteordre:1">'
    b"<OrdreId>6f1c2a8e-0b7d-4c55-9a57-3f1e1f7a2b10</OrdreId></Oppmoteordre>\n"
)
MAIL = (
    b"From: Politiet <post@politi.example>\r\n"
    b"To: russak@kommune.example\r\n"
    b"Subject: Ordre\r\n\r\nSe vedlegg.\r\n"
)


class NoCursor:
    """The spool keeps no cursor; this one fails the test if it is ever touched."""

    def get(self, key: str) -> str | None:
        raise AssertionError("spool must not use the cursor")

    def set(self, key: str, value: str) -> None:
        raise AssertionError("spool must not use the cursor")


CURSOR = NoCursor()


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def synthetic_fnr() -> str:
    for individual in range(100, 500):
        value = synthetic_identity_number(date(1999, 5, 17), individual)
        if value is not None:
            return value
    raise AssertionError("no synthetic number found")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


@pytest.fixture
def spool(tmp_path: Path, clock: SimulatedClock) -> SpoolChannel:
    return SpoolChannel("spool", tmp_path, clock=clock, settle_seconds=0)  # tests drop atomically


def notice(key: str = "notice:7f3a", *, xml: bytes = b"<Melding/>", text: str = "") -> OutboundMessage:
    return OutboundMessage(
        key=key,
        kind="notice",
        recipients=("politiet",),
        subject="Melding om manglende oppfyllelse – sak 12345678",
        body=text or "Personen møtte ikke til samtale.\nVennlig hilsen rådgivende enhet",
        attachments=(
            Attachment("les-meg.txt", "text/plain", b"not this one"),
            Attachment("melding.xml", "application/xml; charset=utf-8", xml),
        ),
    )


def staff_mail(key: str = "case:42:summons-overdue") -> OutboundMessage:
    return OutboundMessage(
        key=key,
        kind="mail",
        recipients=("saksbehandler@kommune.example", "leder@kommune.example"),
        subject="[RUS-2026-0042] Påminnelse: innkalling er forfalt (æøå ÆØÅ)",
        body="Hei!\n\nInnkallingen i sak RUS-2026-0042 er forfalt. Svar med INNKALT <dato>.\n",
        attachments=(Attachment("saksark.xml", "application/xml", b"<Sak>42</Sak>"),),
        headers={"Auto-Submitted": "auto-generated", "In-Reply-To": "<abc@kommune.example>"},
    )


def files_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# -- construction ------------------------------------------------------------------


def test_creates_private_folders_only_as_needed(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = SpoolChannel("spool", tmp_path, clock=clock)
    assert files_in(tmp_path) == [".delivered", "inbox", "mail", "outbox"]
    for folder in (channel.inbox, channel.outbox, channel.mail):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    SpoolChannel("spool", tmp_path, clock=clock, keep_processed=True)
    assert stat.S_IMODE((tmp_path / "processed").stat().st_mode) == 0o700
    assert not (tmp_path / "rejected").exists()


def test_existing_folder_keeps_its_mode(tmp_path: Path, clock: SimulatedClock) -> None:
    (tmp_path / "inbox").mkdir()
    (tmp_path / "inbox").chmod(0o770)  # opened to a dropping group by the operator
    SpoolChannel("spool", tmp_path, clock=clock)
    assert stat.S_IMODE((tmp_path / "inbox").stat().st_mode) == 0o770


def test_missing_root_is_permanent(tmp_path: Path, clock: SimulatedClock) -> None:
    with pytest.raises(PermanentError, match="ENOENT"):
        SpoolChannel("spool", tmp_path / "nowhere", clock=clock)
    assert not (tmp_path / "nowhere").exists()


def test_root_that_is_a_file_is_permanent(tmp_path: Path, clock: SimulatedClock) -> None:
    (tmp_path / "file").write_bytes(b"")
    with pytest.raises(PermanentError):
        SpoolChannel("spool", tmp_path / "file", clock=clock)


def test_implements_both_channel_protocols(spool: SpoolChannel) -> None:
    assert isinstance(spool, InboundChannel)
    assert isinstance(spool, OutboundChannel)


# -- poll --------------------------------------------------------------------------


def test_poll_yields_xml_and_eml(spool: SpoolChannel, clock: SimulatedClock) -> None:
    drop_file(spool.inbox, "ordre.xml", ORDER)
    drop_file(spool.inbox, "brev.EML", MAIL)
    os.utime(spool.inbox / "ordre.xml", (1_700_000_000, 1_700_000_000))
    messages = list(spool.poll(CURSOR))
    assert [(m.kind, m.metadata["filename"]) for m in messages] == [
        ("xml", "ordre.xml"),
        ("email", "brev.EML"),
    ]
    xml, mail = messages
    assert xml.content == ORDER
    assert xml.external_id == sha(ORDER)
    assert xml.channel == "spool"
    assert xml.received_at == clock.now()
    assert xml.sender is None
    assert dict(xml.metadata) == {"filename": "ordre.xml", "size": str(len(ORDER))}
    assert mail.content == MAIL
    assert mail.external_id == sha(MAIL)


def test_poll_ignores_unfinished_hidden_and_foreign_files(spool: SpoolChannel) -> None:
    inbox = spool.inbox
    (inbox / ".ordre.xml").write_bytes(ORDER)
    (inbox / "ordre.xml.tmp").write_bytes(ORDER)
    (inbox / "ordre.xml.part").write_bytes(ORDER)
    (inbox / "ordre.XML.TMP").write_bytes(ORDER)
    (inbox / "notat.txt").write_bytes(b"hei")
    (inbox / "mappe.xml").mkdir()
    outside = spool.root / "secret.xml"
    outside.write_bytes(b"<secret/>")
    (inbox / "lenke.xml").symlink_to(outside)
    os.mkfifo(inbox / "fifo.xml")
    assert list(spool.poll(CURSOR)) == []
    drop_file(inbox, "ORDRE2.XML", ORDER)
    assert [m.metadata["filename"] for m in spool.poll(CURSOR)] == ["ORDRE2.XML"]


def test_poll_is_oldest_first_then_by_name(spool: SpoolChannel) -> None:
    for name, mtime in [("c.xml", 300), ("b.xml", 100), ("a.xml", 300), ("d.eml", 200)]:
        path = drop_file(spool.inbox, name, name.encode())
        os.utime(path, (1_700_000_000 + mtime, 1_700_000_000 + mtime))
    names = [m.metadata["filename"] for m in spool.poll(CURSOR)]
    assert names == ["b.xml", "d.eml", "a.xml", "c.xml"]


def test_poll_respects_settle_time(tmp_path: Path, clock: SimulatedClock) -> None:
    """Changed on purpose: settling is measured by the monotonic clock between polls,
    not by comparing file times with the wall clock (see test_spool_settle.py)."""
    import connectors.spool

    ticks = [0.0]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(connectors.spool, "monotonic", lambda: ticks[0])
        channel = SpoolChannel("spool", tmp_path, clock=clock, settle_seconds=60)
    path = drop_file(channel.inbox, "ordre.xml", ORDER)
    assert list(channel.poll(CURSOR)) == []
    clock.advance(timedelta(hours=1))  # simulated time is not what settles a file
    assert list(channel.poll(CURSOR)) == []
    old = time.time() - 120
    os.utime(path, (old, old))  # an old mtime is no shortcut either: it is a change
    ticks[0] = 59.0
    assert list(channel.poll(CURSOR)) == []
    ticks[0] = 59.0 + 60
    assert [m.external_id for m in channel.poll(CURSOR)] == [sha(ORDER)]


def test_same_content_twice_has_the_same_external_id(spool: SpoolChannel) -> None:
    drop_file(spool.inbox, "a.xml", ORDER)
    drop_file(spool.inbox, "b.xml", ORDER)
    drop_file(spool.inbox, "c.xml", ORDER + b" ")
    ids = {m.metadata["filename"]: m.external_id for m in spool.poll(CURSOR)}
    assert ids["a.xml"] == ids["b.xml"] == sha(ORDER)
    assert ids["c.xml"] != ids["a.xml"]


def test_poll_reads_lazily_and_skips_files_gone_meanwhile(spool: SpoolChannel) -> None:
    first = drop_file(spool.inbox, "a.xml", b"<a/>")
    second = drop_file(spool.inbox, "b.xml", b"<b/>")
    os.utime(first, (1_700_000_000, 1_700_000_000))
    messages = spool.poll(CURSOR)
    assert next(messages).content == b"<a/>"
    second.unlink()  # e.g. another process took it after the scan
    assert list(messages) == []


def test_poll_does_not_keep_state(spool: SpoolChannel) -> None:
    drop_file(spool.inbox, "ordre.xml", ORDER)
    assert len(list(spool.poll(CURSOR))) == 1
    # Not acknowledged: it must come again (at least once).
    assert len(list(spool.poll(CURSOR))) == 1


def test_oversized_file_is_truncated_and_rejected_on_ack(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = SpoolChannel("spool", tmp_path, clock=clock, max_bytes=16, settle_seconds=0)
    data = b"<x>" + b"a" * 97
    drop_file(channel.inbox, "stor.xml", data)
    drop_file(channel.inbox, "liten.xml", b"<x/>")
    by_name = {m.metadata["filename"]: m for m in channel.poll(CURSOR)}
    big = by_name["stor.xml"]
    assert big.content == data[:17]
    assert big.metadata["truncated"] == "true"
    assert big.metadata["size"] == "100"
    assert big.external_id == sha(data[:17])
    assert "truncated" not in by_name["liten.xml"].metadata
    channel.acknowledge(big)
    assert (tmp_path / "rejected" / "stor.xml").read_bytes() == data
    assert stat.S_IMODE((tmp_path / "rejected").stat().st_mode) == 0o700
    assert files_in(channel.inbox) == ["liten.xml"]
    channel.acknowledge(big)  # idempotent
    assert (tmp_path / "rejected" / "stor.xml").read_bytes() == data


def test_scan_errors_are_translated(spool: SpoolChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(path: object) -> object:
        raise OSError(errno.EIO, "Input/output error", str(path))

    monkeypatch.setattr(os, "scandir", broken)
    with pytest.raises(TransientError, match="EIO") as info:
        list(spool.poll(CURSOR))
    assert isinstance(info.value.__cause__, OSError)


def test_missing_inbox_is_permanent(spool: SpoolChannel) -> None:
    spool.inbox.rmdir()
    with pytest.raises(PermanentError, match="ENOENT"):
        list(spool.poll(CURSOR))


@settings(max_examples=40, deadline=None)
@given(content=st.binary(min_size=0, max_size=2048), eml=st.booleans())
def test_poll_returns_content_exactly(content: bytes, eml: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        channel = SpoolChannel(
            "spool", Path(tmp), clock=SimulatedClock(START), max_bytes=1024, settle_seconds=0
        )
        drop_file(channel.inbox, "x.eml" if eml else "x.xml", content)
        (message,) = channel.poll(CURSOR)
        assert message.content == content[:1025]
        assert message.external_id == sha(content[:1025])
        assert message.kind == ("email" if eml else "xml")
        assert ("truncated" in message.metadata) == (len(content) > 1024)
        channel.acknowledge(message)
        assert list(channel.poll(CURSOR)) == []


# -- acknowledge -------------------------------------------------------------------


def test_acknowledge_deletes_and_is_idempotent(spool: SpoolChannel) -> None:
    drop_file(spool.inbox, "ordre.xml", ORDER)
    (message,) = spool.poll(CURSOR)
    spool.acknowledge(message)
    assert files_in(spool.inbox) == []
    assert not spool.processed.exists()
    spool.acknowledge(message)  # already gone: fine
    assert list(spool.poll(CURSOR)) == []


def test_acknowledge_moves_to_processed_without_overwriting(tmp_path: Path, clock: SimulatedClock) -> None:
    channel = SpoolChannel("spool", tmp_path, clock=clock, keep_processed=True, settle_seconds=0)
    drop_file(channel.inbox, "ordre.xml", b"<first/>")
    (first,) = channel.poll(CURSOR)
    channel.acknowledge(first)
    drop_file(channel.inbox, "ordre.xml", b"<second/>")
    (second,) = channel.poll(CURSOR)
    channel.acknowledge(second)
    assert files_in(channel.inbox) == []
    kept = {p.read_bytes() for p in channel.processed.iterdir()}
    assert kept == {b"<first/>", b"<second/>"}
    assert (channel.processed / "ordre.xml").read_bytes() == b"<first/>"
    # The same content dropped once more under the same name: one copy is enough.
    drop_file(channel.inbox, "ordre.xml", b"<first/>")
    (third,) = channel.poll(CURSOR)
    channel.acknowledge(third)
    assert files_in(channel.inbox) == []
    assert len(files_in(channel.processed)) == 2


def test_acknowledge_leaves_a_replaced_file_alone(
    spool: SpoolChannel, caplog: pytest.LogCaptureFixture
) -> None:
    fnr = synthetic_fnr()
    name = f"ordre-{fnr}.xml"  # senders do put such things in file names
    path = drop_file(spool.inbox, name, ORDER)
    (message,) = spool.poll(CURSOR)
    replacement = path.with_name(".new")
    replacement.write_bytes(b"<annen/>")
    os.replace(replacement, path)
    with caplog.at_level(logging.WARNING, logger="connectors.spool"):
        spool.acknowledge(message)
    assert path.read_bytes() == b"<annen/>"
    assert "replaced" in caplog.text
    assert fnr not in caplog.text
    (again,) = spool.poll(CURSOR)
    assert again.external_id == sha(b"<annen/>")


def test_acknowledge_refuses_a_foreign_message(spool: SpoolChannel) -> None:
    drop_file(spool.inbox, "ordre.xml", ORDER)
    (message,) = spool.poll(CURSOR)
    foreign = RawMessage(
        channel="other",
        external_id=message.external_id,
        content=message.content,
        kind="xml",
        received_at=message.received_at,
        metadata=message.metadata,
    )
    escaping = RawMessage(
        channel="spool",
        external_id=message.external_id,
        content=message.content,
        kind="xml",
        received_at=message.received_at,
        metadata={"filename": "../outbox/ordre.xml"},
    )
    for bad in (foreign, escaping):
        with pytest.raises(PermanentError):
            spool.acknowledge(bad)
    assert files_in(spool.inbox) == ["ordre.xml"]


# -- send: notices -----------------------------------------------------------------


def test_send_notice_writes_text_then_xml(
    spool: SpoolChannel, clock: SimulatedClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    order: list[str] = []
    real_replace = os.replace

    def recording_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        order.append(Path(dst).name)
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)
    message = notice(xml=b"<MeldingOmManglendeOppfyllelse/>")
    receipt = spool.send(message)
    stem = safe_name(message.key)
    # Changed on purpose: the manifest (.json) comes between the text and the marker.
    assert order == [f"{stem}.txt", f"{stem}.json", f"{stem}.xml"]
    assert receipt.channel == "spool"
    assert receipt.reference == f"outbox/{stem}.xml"
    assert receipt.delivered_at == clock.now()
    assert receipt.duplicate is False
    assert files_in(spool.outbox) == [f"{stem}.json", f"{stem}.txt", f"{stem}.xml"]
    marker = spool.root / receipt.reference
    assert marker.read_bytes() == b"<MeldingOmManglendeOppfyllelse/>"
    text = (spool.outbox / f"{stem}.txt").read_text(encoding="utf-8")
    assert text == f"{message.subject}\n\n{message.body}\n"
    for path in spool.outbox.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_duplicate_notice_is_not_rewritten(spool: SpoolChannel, clock: SimulatedClock) -> None:
    first = spool.send(notice(xml=b"<v1/>"))
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in spool.outbox.iterdir()}
    time.sleep(0.01)
    clock.advance(timedelta(minutes=5))
    second = spool.send(notice(xml=b"<v2/>", text="endret tekst"))
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in spool.outbox.iterdir()}
    assert second.duplicate is True
    assert second.reference == first.reference
    assert after == before
    assert (spool.root / first.reference).read_bytes() == b"<v1/>"


def test_notice_interrupted_before_its_marker_is_completed(spool: SpoolChannel) -> None:
    message = notice()
    stem = safe_name(message.key)
    (spool.outbox / f"{stem}.txt").write_text("half", encoding="utf-8")
    receipt = spool.send(message)
    assert receipt.duplicate is False
    assert (spool.outbox / f"{stem}.txt").read_text(encoding="utf-8").startswith(message.subject)
    assert (spool.outbox / f"{stem}.xml").exists()


def test_notice_without_xml_is_permanent(spool: SpoolChannel) -> None:
    message = OutboundMessage(
        key="k", kind="notice", recipients=(), subject="s", body="b",
        attachments=(Attachment("a.pdf", "application/pdf", b"%PDF"),),
    )  # fmt: skip
    with pytest.raises(PermanentError, match="XML"):
        spool.send(message)
    assert files_in(spool.outbox) == []


def test_empty_key_is_permanent(spool: SpoolChannel) -> None:
    with pytest.raises(PermanentError):
        spool.send(notice(key=""))


def test_different_keys_never_share_a_file(spool: SpoolChannel) -> None:
    a = spool.send(notice(key="case/42"))
    b = spool.send(notice(key="case:42"))
    assert a.reference != b.reference
    assert not a.duplicate and not b.duplicate


@given(key=st.text(min_size=1, max_size=400))
def test_safe_name_is_a_safe_unique_file_name(key: str) -> None:
    name = safe_name(key)
    assert re.fullmatch(r"[A-Za-z0-9._-]+", name)
    assert not name.startswith(".")
    assert len(name) <= 111
    assert name == safe_name(key)
    assert name.endswith("-" + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()[:10])


@given(a=st.text(min_size=1, max_size=30), b=st.text(min_size=1, max_size=30))
def test_safe_names_of_different_keys_differ(a: str, b: str) -> None:
    assert (safe_name(a) == safe_name(b)) == (a == b)


# -- send: mail --------------------------------------------------------------------


def parse(path: Path) -> EmailMessage:
    parsed = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_send_mail_writes_a_parseable_eml(spool: SpoolChannel, clock: SimulatedClock) -> None:
    message = staff_mail()
    receipt = spool.send(message)
    stem = safe_name(message.key)
    assert receipt.reference == f"mail/{stem}.eml"
    assert receipt.duplicate is False
    path = spool.root / receipt.reference
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    mail = parse(path)
    assert mail["From"] == "russak-gateway@localhost"
    assert mail["To"] == "saksbehandler@kommune.example, leder@kommune.example"
    assert mail["Subject"] == message.subject
    assert mail["Date"].datetime == clock.now()
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["In-Reply-To"] == "<abc@kommune.example>"
    assert re.fullmatch(r"<[A-Za-z0-9_-]+@russak-gateway>", mail["Message-ID"])
    body = mail.get_body(preferencelist=("plain",))
    assert body is not None
    assert body.get_content() == message.body
    (attachment,) = mail.iter_attachments()
    assert attachment.get_filename() == "saksark.xml"
    assert attachment.get_content_type() == "application/xml"
    assert attachment.get_payload(decode=True) == b"<Sak>42</Sak>"
    assert b"\xc3\xa6" not in path.read_bytes().split(b"\n\n", 1)[0]  # headers encoded


def test_message_id_is_stable_per_key(tmp_path: Path, clock: SimulatedClock) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    one = SpoolChannel("a", tmp_path / "a", clock=clock)
    two = SpoolChannel("b", tmp_path / "b", clock=clock, sender_address="enhet@kommune.example")
    ids = []
    for channel in (one, two):
        receipt = channel.send(staff_mail("case:42:daily.."))
        ids.append(parse(channel.root / receipt.reference)["Message-ID"])
    other = one.send(staff_mail("case:43:daily.."))
    assert ids[0] == ids[1]
    assert parse(one.root / other.reference)["Message-ID"] != ids[0]


def test_duplicate_mail_is_not_rewritten(spool: SpoolChannel) -> None:
    first = spool.send(staff_mail())
    path = spool.root / first.reference
    before = (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes())
    second = spool.send(staff_mail())
    assert second.duplicate is True
    assert second.reference == first.reference
    assert (path.stat().st_ino, path.stat().st_mtime_ns, path.read_bytes()) == before


def test_mail_may_not_override_channel_headers(spool: SpoolChannel) -> None:
    message = OutboundMessage(
        key="k", kind="mail", recipients=("a@kommune.example",), subject="s", body="b",
        headers={"message-id": "<forged@example>"},
    )  # fmt: skip
    with pytest.raises(PermanentError):
        spool.send(message)
    assert files_in(spool.mail) == []


def test_mail_header_injection_is_permanent(spool: SpoolChannel) -> None:
    message = OutboundMessage(
        key="k", kind="mail", recipients=("a@kommune.example",),
        subject="hei\r\nBcc: alle@example", body="b",
    )  # fmt: skip
    with pytest.raises(PermanentError):
        spool.send(message)
    assert files_in(spool.mail) == []


def test_mail_without_recipients_is_permanent(spool: SpoolChannel) -> None:
    message = OutboundMessage(key="k", kind="mail", recipients=(), subject="s", body="b")
    with pytest.raises(PermanentError):
        spool.send(message)


# -- errors across the seam --------------------------------------------------------


def test_outbox_that_is_a_file_is_permanent(spool: SpoolChannel) -> None:
    spool.outbox.rmdir()
    spool.outbox.write_bytes(b"")  # ENOTDIR for anything under it
    with pytest.raises(PermanentError, match="ENOTDIR") as info:
        spool.send(notice())
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_outbox_is_permanent(spool: SpoolChannel) -> None:
    spool.outbox.chmod(0o500)
    try:
        with pytest.raises(PermanentError, match="EACCES"):
            spool.send(notice())
    finally:
        spool.outbox.chmod(0o700)


def test_disk_full_is_transient_and_leaves_no_temporary_file(
    spool: SpoolChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Changed on purpose: the disk fills while the files are written (os.write), before
    the delivery marker; a failure after the marker keeps the temporary files for the
    resend to finish (test_spool_delivery.py)."""

    def full(fd: int, data: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(TransientError, match="ENOSPC") as info:
        spool.send(notice())
    assert str(info.value) == ("spool: storage full writing outbox/ (ENOSPC); free space on the spool volume")
    assert files_in(spool.outbox) == []
    assert files_in(spool.delivered) == []
    cause = info.value.__cause__
    assert isinstance(cause, OSError)
    assert cause.filename is None  # scrubbed: names may carry personal data
    monkeypatch.undo()
    assert spool.send(notice()).duplicate is False  # a retry later succeeds


def test_error_messages_carry_no_file_names(spool: SpoolChannel, monkeypatch: pytest.MonkeyPatch) -> None:
    fnr = synthetic_fnr()
    drop_file(spool.inbox, f"ordre-{fnr}.xml", ORDER)
    (message,) = spool.poll(CURSOR)

    def denied(path: object, *args: object, **kwargs: object) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    with monkeypatch.context() as patch, pytest.raises(PermanentError) as info:
        patch.setattr(os, "open", denied)
        spool.acknowledge(message)
    assert fnr not in str(info.value)
    assert fnr not in str(info.value.__cause__)


# -- drop_file ---------------------------------------------------------------------


def test_drop_file_is_atomic_and_refuses_to_clobber(tmp_path: Path) -> None:
    path = drop_file(tmp_path, "ordre.xml", ORDER)
    assert path == tmp_path / "ordre.xml"
    assert path.read_bytes() == ORDER
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert files_in(tmp_path) == ["ordre.xml"]
    with pytest.raises(FileExistsError):
        drop_file(tmp_path, "ordre.xml", b"<other/>")
    assert path.read_bytes() == ORDER
    for bad in (".skjult.xml", "../ut.xml", "notat.txt", "ordre.xml.part"):
        with pytest.raises(ValueError):
            drop_file(tmp_path, bad, ORDER)


def test_acknowledge_leaves_a_file_swapped_for_a_copy(
    spool: SpoolChannel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Same bytes, but a new file under the name between the check and the unlink."""
    import connectors.spool.inbox as module
    from connectors.spool.files import read_fd as real_read

    path = drop_file(spool.inbox, "ordre.xml", ORDER)
    (message,) = spool.poll(CURSOR)

    def read_then_swap(fd: int, limit: int) -> bytes:
        found = real_read(fd, limit)
        twin = path.with_name(".twin")
        twin.write_bytes(ORDER)
        os.replace(twin, path)
        return found

    with monkeypatch.context() as patch:
        patch.setattr(module, "read_fd", read_then_swap)
        spool.acknowledge(message)
    assert path.read_bytes() == ORDER  # left for the next poll, which sees a duplicate
    (again,) = spool.poll(CURSOR)
    assert again.external_id == message.external_id
    spool.acknowledge(again)
    assert files_in(spool.inbox) == []


def test_modes_are_exact_whatever_the_umask(tmp_path: Path, clock: SimulatedClock) -> None:
    old = os.umask(0o277)
    try:
        channel = SpoolChannel("spool", tmp_path, clock=clock)
        receipt = channel.send(notice())
        dropped = drop_file(channel.inbox, "ordre.xml", ORDER)
    finally:
        os.umask(old)
    assert stat.S_IMODE(channel.outbox.stat().st_mode) == 0o700
    assert stat.S_IMODE((channel.root / receipt.reference).stat().st_mode) == 0o600
    assert stat.S_IMODE(dropped.stat().st_mode) == 0o600


def test_stale_temporary_files_of_a_killed_writer_are_swept_by_monotonic_age(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Age is counted by the monotonic clock across sweeps, not from the file's mtime:
    a write in progress survives a wall-clock step forward (a file written a moment
    ago with an mtime an hour or a year back, as after a step, is not removed)."""
    import os as _os
    import time as _time

    import connectors.spool as spool_module
    from gateway.clock import SystemClock

    ticks = [1000.0]
    monkeypatch.setattr(spool_module, "monotonic", lambda: ticks[0])
    root = tmp_path / "spool"
    root.mkdir()
    first = SpoolChannel("spool", root, clock=SystemClock())
    left = first.outbox / ".notice_x.xml.abcdef.tmp"
    left.write_bytes(b"partial")
    a_year_ago = _time.time() - 365 * 86400
    _os.utime(left, (a_year_ago, a_year_ago))
    channel = SpoolChannel("spool", root, clock=SystemClock())  # start: first seen
    assert left.exists()
    ticks[0] += 299
    list(channel.poll(None))  # type: ignore[arg-type]
    assert left.exists()
    growing = channel.mail / ".m.eml.123456.tmp"
    growing.write_bytes(b"part")
    ticks[0] += 2
    list(channel.poll(None))  # type: ignore[arg-type]
    assert not left.exists()  # unchanged for 301 s: the writer is gone
    assert growing.exists()
    growing.write_bytes(b"partial, still being written")
    ticks[0] += 400
    list(channel.poll(None))  # type: ignore[arg-type]
    assert growing.exists()  # it changed since it was first seen: not stale yet


def test_a_resend_after_the_pickup_moved_the_file_still_delivers_nothing(tmp_path: Path) -> None:
    from gateway.clock import SystemClock
    from gateway.ports import Attachment, OutboundMessage

    root = tmp_path / "spool"
    root.mkdir()
    channel = SpoolChannel("spool", root, clock=SystemClock())
    notice = OutboundMessage(
        key="notice:abc",
        kind="notice",
        recipients=("p@example.org",),
        subject="s",
        body="b",
        attachments=(Attachment("m.xml", "application/xml", b"<x/>"),),
    )
    first = channel.send(notice)
    for path in channel.outbox.iterdir():  # the police's transfer takes the files away
        path.rename(tmp_path / path.name)
    again = channel.send(notice)
    assert (first.duplicate, again.duplicate) == (False, True)
    assert list(channel.outbox.iterdir()) == []
