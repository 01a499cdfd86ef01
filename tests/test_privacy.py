"""Field encryption, key files, keyed hashing and log redaction, against real files,
a real SQLite engine and real logging handlers."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import logging
import os
import re
import secrets
import stat
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import Column, Integer, MetaData, Table, create_engine, insert, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from gateway.domain.identifiers import synthetic_identity_number
from gateway.privacy import (
    Cipher,
    DecryptionError,
    EncryptedBytes,
    EncryptedText,
    KeyFileError,
    RedactingFilter,
    RedactingFormatter,
    active_cipher,
    generate_key_file,
    install_cipher,
    load_key_file,
    new_key_line,
    redact,
    rotate_key_file,
)

MASK = "*" * 11
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def synthetic(birth: date = date(1990, 5, 17)) -> str:
    for individual in range(1000):
        number = synthetic_identity_number(birth, individual)
        if number is not None:
            return number
    raise AssertionError("no synthetic number")


FNR = synthetic()


@pytest.fixture
def key_file(tmp_path: Path) -> Path:
    path = tmp_path / "keys"
    generate_key_file(path)
    return path


@pytest.fixture
def cipher(key_file: Path) -> Iterator[Cipher]:
    loaded = load_key_file(key_file)
    install_cipher(loaded)
    yield loaded
    install_cipher(None)


def key_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if line.startswith("russak-key-1:")]


def write_key_file(path: Path, content: str, mode: int = 0o600) -> Path:
    path.write_text(content)
    path.chmod(mode)
    return path


# --- key files -------------------------------------------------------------------------


def test_generated_key_file_is_private_and_loads(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    old_umask = os.umask(0)  # even with no umask the file must be 0600
    try:
        generate_key_file(path)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    lines = key_lines(path)
    assert len(lines) == 1
    raw = base64.urlsafe_b64decode(lines[0].removeprefix("russak-key-1:"))
    assert len(raw) == 32
    assert load_key_file(path).decrypt(load_key_file(path).encrypt(b"x")) == b"x"


def test_two_generated_files_hold_different_keys(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "a")
    generate_key_file(tmp_path / "b")
    assert key_lines(tmp_path / "a") != key_lines(tmp_path / "b")


def test_generate_never_overwrites(key_file: Path) -> None:
    before = key_file.read_bytes()
    with pytest.raises(KeyFileError, match="already exists") as info:
        generate_key_file(key_file)
    assert str(key_file) in str(info.value)
    assert key_file.read_bytes() == before


def test_generate_does_not_follow_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "keys"
    link.symlink_to(target)
    with pytest.raises(KeyFileError):
        generate_key_file(link)
    assert not target.exists()


def test_generate_in_missing_directory_fails_cleanly(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="cannot create"):
        generate_key_file(tmp_path / "missing" / "keys")


def test_missing_key_file(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(KeyFileError, match="not found") as info:
        load_key_file(path)
    assert str(path) in str(info.value)


def test_directory_is_not_a_key_file(tmp_path: Path) -> None:
    with pytest.raises(KeyFileError, match="not a regular file"):
        load_key_file(tmp_path)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_key_file(key_file: Path) -> None:
    key_file.chmod(0o000)
    with pytest.raises(KeyFileError, match="cannot open"):
        load_key_file(key_file)


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o602, 0o601, 0o666])
def test_key_file_open_to_others_is_refused(key_file: Path, mode: int) -> None:
    key_file.chmod(mode)
    with pytest.raises(KeyFileError, match="other users") as info:
        load_key_file(key_file)
    assert str(key_file) in str(info.value)


@pytest.mark.parametrize("mode", [0o600, 0o640, 0o400, 0o440])
def test_owner_and_group_access_is_allowed(key_file: Path, mode: int) -> None:
    key_file.chmod(mode)
    assert isinstance(load_key_file(key_file), Cipher)


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "no keys"),
        ("# only a comment\n\n", "no keys"),
        ("russak-key-2:{key}\n", "line 1 is not"),
        ("\n\nsecret-{key}\n", "line 3 is not"),
        ("russak-key-1:{key}\nrussak-key-1:!!{key}\n", "line 2 is not valid base64"),
        ("russak-key-1:{short}\n", "holds 16 bytes"),
    ],
)
def test_malformed_key_files_never_echo_key_material(tmp_path: Path, content: str, problem: str) -> None:
    key = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    short = base64.urlsafe_b64encode(secrets.token_bytes(16)).decode()
    path = write_key_file(tmp_path / "keys", content.format(key=key, short=short))
    with pytest.raises(KeyFileError, match=problem) as info:
        load_key_file(path)
    message = str(info.value)
    assert str(path) in message
    assert key[:12] not in message
    assert short[:12] not in message
    assert info.value.__cause__ is None


def test_comments_blank_lines_and_missing_padding_are_fine(tmp_path: Path) -> None:
    line = new_key_line().rstrip("=")
    path = write_key_file(tmp_path / "keys", f"# keys\n\n   {line}   \n# end\n")
    cipher = load_key_file(path)
    assert cipher.decrypt_text(cipher.encrypt_text("hei")) == "hei"


def test_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_bytes(b"\xff\xfe" + new_key_line().encode())
    path.chmod(0o600)
    with pytest.raises(KeyFileError, match="UTF-8"):
        load_key_file(path)


def test_repr_shows_no_key_material(key_file: Path) -> None:
    cipher = load_key_file(key_file)
    encoded = key_lines(key_file)[0].removeprefix("russak-key-1:")
    assert encoded[:10] not in repr(cipher)
    assert repr(cipher) == "<Cipher with 1 key(s)>"


# --- encryption and hashing ----------------------------------------------------------


def test_round_trip(key_file: Path) -> None:
    cipher = load_key_file(key_file)
    for data in (b"", b"\x00\xff" * 100, FNR.encode()):
        token = cipher.encrypt(data)
        assert data not in token or data == b""
        assert cipher.decrypt(token) == data
    name = "Åse Ørnes-Ærlig"
    assert cipher.decrypt_text(cipher.encrypt_text(name)) == name


def test_encryption_is_randomised(key_file: Path) -> None:
    cipher = load_key_file(key_file)
    assert cipher.encrypt(b"same") != cipher.encrypt(b"same")


def test_foreign_and_tampered_tokens_fail(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "a")
    generate_key_file(tmp_path / "b")
    a, b = load_key_file(tmp_path / "a"), load_key_file(tmp_path / "b")
    token = a.encrypt(b"personal data")
    with pytest.raises(DecryptionError):
        b.decrypt(token)
    tampered = bytearray(base64.urlsafe_b64decode(token))
    tampered[-40] ^= 1
    with pytest.raises(DecryptionError):
        a.decrypt(base64.urlsafe_b64encode(bytes(tampered)))
    with pytest.raises(DecryptionError):
        a.decrypt(b"not a token at all")


def test_rotation_by_prepending_a_line(key_file: Path) -> None:
    old = load_key_file(key_file)
    old_token = old.encrypt_text("gammel")
    old_hash = old.keyed_hash(FNR)
    key_file.write_text(new_key_line() + "\n" + key_file.read_text())

    new = load_key_file(key_file)
    assert new.decrypt_text(old_token) == "gammel"  # old key still decrypts
    new_token = new.encrypt_text("ny")
    with pytest.raises(DecryptionError):  # new data uses the new key
        old.decrypt(new_token)
    assert new.keyed_hash(FNR) != old_hash  # new hashes use the new key too ...
    assert new.keyed_hashes(FNR) == [new.keyed_hash(FNR), old_hash]  # ... old ones still match


def test_rotate_key_file_keeps_mode_comments_and_old_keys(key_file: Path) -> None:
    key_file.chmod(0o640)
    before = key_lines(key_file)
    old = load_key_file(key_file)
    token = old.encrypt(b"data")

    rotate_key_file(key_file)

    after = key_lines(key_file)
    assert len(after) == 2
    assert after[1:] == before
    assert key_file.read_text().startswith("#")  # the header stays on top
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o640
    assert not [p for p in key_file.parent.iterdir() if p.name.endswith(".tmp")]
    new = load_key_file(key_file)
    assert new.decrypt(token) == b"data"
    assert old.keyed_hash(FNR) in new.keyed_hashes(FNR)
    rekeyed = new.rotate(token)
    assert new.decrypt(rekeyed) == b"data"
    with pytest.raises(DecryptionError):
        old.decrypt(rekeyed)


def test_rotate_refuses_a_broken_key_file(tmp_path: Path) -> None:
    path = write_key_file(tmp_path / "keys", "garbage\n")
    with pytest.raises(KeyFileError):
        rotate_key_file(path)
    assert path.read_text() == "garbage\n"


def test_keyed_hash(tmp_path: Path) -> None:
    generate_key_file(tmp_path / "a")
    generate_key_file(tmp_path / "b")
    a, b = load_key_file(tmp_path / "a"), load_key_file(tmp_path / "b")
    digest = a.keyed_hash(FNR)
    assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert a.keyed_hash(f" {FNR[:6]} {FNR[6:]}\n") == digest
    assert a.keyed_hash(synthetic(date(1991, 5, 17))) != digest
    assert b.keyed_hash(FNR) != digest  # useless without the key file
    assert hashlib.sha256(FNR.encode()).hexdigest() != digest


def test_keyed_hashes_one_per_key_newest_first(tmp_path: Path) -> None:
    lines = [new_key_line() for _ in range(3)]
    path = write_key_file(tmp_path / "keys", "\n".join(lines) + "\n")
    everything = load_key_file(path)
    singles = [load_key_file(write_key_file(tmp_path / f"k{i}", line + "\n")) for i, line in enumerate(lines)]
    assert everything.keyed_hashes(FNR) == [single.keyed_hash(FNR) for single in singles]
    assert everything.keyed_hash(FNR) == singles[0].keyed_hash(FNR)  # stored hashes: the newest key
    assert everything.keyed_hashes(f"{FNR[:6]} {FNR[6:]}") == everything.keyed_hashes(FNR)
    repeated = load_key_file(write_key_file(tmp_path / "rep", f"{lines[0]}\n{lines[0]}\n"))
    assert repeated.keyed_hashes(FNR) == [singles[0].keyed_hash(FNR)]


def test_is_current_tells_tokens_under_the_newest_key(tmp_path: Path) -> None:
    old_line, new_line = new_key_line(), new_key_line()
    old = load_key_file(write_key_file(tmp_path / "old", old_line + "\n"))
    both = load_key_file(write_key_file(tmp_path / "both", f"{new_line}\n{old_line}\n"))
    token = old.encrypt(b"x")
    assert old.is_current(token)
    assert not both.is_current(token)
    assert both.is_current(both.rotate(token))
    assert not both.is_current(b"not a token")


def test_hash_key_is_separate_from_encryption_key(key_file: Path) -> None:
    raw = base64.urlsafe_b64decode(key_lines(key_file)[0].removeprefix("russak-key-1:"))
    cipher = load_key_file(key_file)
    assert cipher.keyed_hash(FNR) != hmac.new(raw, FNR.encode(), hashlib.sha256).hexdigest()


def test_cipher_refuses_bad_keys() -> None:
    with pytest.raises(ValueError):
        Cipher([])
    with pytest.raises(ValueError):
        Cipher([b"short"])


def test_active_cipher_requires_installation(key_file: Path) -> None:
    install_cipher(None)
    with pytest.raises(RuntimeError, match="no encryption key loaded"):
        active_cipher()
    cipher = load_key_file(key_file)
    install_cipher(cipher)
    try:
        assert active_cipher() is cipher
    finally:
        install_cipher(None)


# --- SQLAlchemy column types -----------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Person(Base):
    __tablename__ = "person"
    id: Mapped[int] = mapped_column(primary_key=True)
    fnr: Mapped[str | None] = mapped_column(EncryptedText)
    order_xml: Mapped[bytes | None] = mapped_column(EncryptedBytes)


def test_type_decorators_round_trip_and_store_no_clear_text(cipher: Cipher, tmp_path: Path) -> None:
    db_file = tmp_path / "gateway.sqlite"
    engine = create_engine(f"sqlite:///{db_file}")
    Base.metadata.create_all(engine)
    xml = f"<Oppmoteordre><Fodselsnummer>{FNR}</Fodselsnummer></Oppmoteordre>".encode()
    with Session(engine) as session:
        session.add(Person(id=1, fnr=FNR, order_xml=xml))
        session.add(Person(id=2, fnr=None, order_xml=None))
        session.commit()
    with Session(engine) as session:
        first = session.get(Person, 1)
        second = session.get(Person, 2)
        assert first is not None and second is not None
        assert first.fnr == FNR
        assert first.order_xml == xml
        assert (second.fnr, second.order_xml) == (None, None)
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT fnr, order_xml FROM person ORDER BY id")).all()
    raw_fnr, raw_xml = rows[0]
    assert isinstance(raw_fnr, bytes)
    assert FNR.encode() not in raw_fnr
    assert FNR.encode() not in raw_xml
    assert b"Oppmoteordre" not in raw_xml
    assert cipher.decrypt_text(raw_fnr) == FNR
    assert rows[1] == (None, None)
    # The database file itself holds no clear text either.
    engine.dispose()
    on_disk = db_file.read_bytes()
    assert b"CREATE TABLE person" in on_disk  # proves we read the real file
    assert FNR.encode() not in on_disk
    assert b"Oppmoteordre" not in on_disk


def test_type_decorators_in_core_tables(cipher: Cipher) -> None:
    metadata = MetaData()
    table = Table("t", metadata, Column("id", Integer, primary_key=True), Column("v", EncryptedText))
    engine = create_engine("sqlite://")
    metadata.create_all(engine)
    with engine.begin() as conn:
        conn.execute(insert(table), [{"id": 1, "v": "Kari"}, {"id": 2, "v": "Kari"}])
        raw = conn.execute(text("SELECT v FROM t ORDER BY id")).scalars().all()
        values = conn.execute(select(table.c.v).order_by(table.c.id)).scalars().all()
    assert values == ["Kari", "Kari"]
    assert raw[0] != raw[1]  # randomised: equal values do not reveal equality


def test_type_decorators_refuse_without_key_or_with_wrong_type(cipher: Cipher) -> None:
    engine = create_engine("sqlite://")
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add(Person(id=1, fnr=12345))
        with pytest.raises(Exception, match="EncryptedText takes str"):
            session.commit()
    install_cipher(None)
    with Session(engine) as session:
        session.add(Person(id=1, fnr="Kari"))
        with pytest.raises(Exception, match="no encryption key loaded"):
            session.commit()


def test_type_decorators_are_cacheable() -> None:
    assert EncryptedText.cache_ok is True
    assert EncryptedBytes.cache_ok is True


# --- redaction -------------------------------------------------------------------------


@pytest.mark.parametrize("separator", ["", " ", ".", "-", "\u00a0"])
def test_identity_numbers_are_masked(separator: str) -> None:
    written = FNR[:6] + separator + FNR[6:]
    assert redact(f"fnr {written}, ok") == f"fnr {MASK}, ok"
    assert redact(f"fnr:{written}.") == f"fnr:{MASK}."
    assert redact(f"x{written}y") == f"x{MASK}y"


def test_invalid_eleven_digit_runs_are_masked_too() -> None:
    typo = FNR[:10] + str((int(FNR[10]) + 1) % 10)
    assert redact(f"nummer {typo}") == f"nummer {MASK}"


@pytest.mark.parametrize(
    "kept",
    [
        "974760673",
        "974 760 673",
        "RUS-2026-0001",
        "2026-12-03",
        "03.12.2026",
        "2026-12-03T10:00:00+01:00",
        "123e4567-e89b-12d3-a456-426614174000",
        "123e4567-e89b-12d3-a456-a26614174000",  # 11 digits after a hex letter
        "12345678-1234-1234-1234-123456789012",
        "123456789012",  # 12 digits: not an identity number
        "1234567890",  # 10 digits
        "1767225600123",  # epoch milliseconds
        "+47 912 34 567",
        "1234.56.78903",  # bank account in its usual grouping
    ],
)
def test_other_numbers_survive(kept: str) -> None:
    assert redact(f"a {kept} b") == f"a {kept} b"


def not_digit_edge(s: str, at: int) -> bool:
    return not s or not re.match(r"\d", s[at])


@given(
    birth=st.dates(min_value=date(1900, 1, 1), max_value=date(2039, 12, 31)),
    individual=st.integers(min_value=0, max_value=999),
    before=st.text(max_size=40).filter(lambda s: not_digit_edge(s, -1)),
    after=st.text(max_size=40).filter(lambda s: not_digit_edge(s, 0)),
    separator=st.sampled_from(["", " ", "."]),
)
def test_any_embedded_synthetic_number_is_masked(
    birth: date, individual: int, before: str, after: str, separator: str
) -> None:
    number = synthetic_identity_number(birth, individual)
    if number is None:
        return
    result = redact(before + number[:6] + separator + number[6:] + after)
    assert number not in result.replace(" ", "").replace(".", "")
    assert MASK in result


@given(
    org=st.integers(min_value=800_000_000, max_value=999_999_999),
    year=st.integers(min_value=2020, max_value=2099),
    seq=st.integers(min_value=1, max_value=9999),
)
def test_org_numbers_and_case_numbers_are_kept(org: int, year: int, seq: int) -> None:
    line = f"org {org} sak RUS-{year}-{seq:04d} dato {year}-01-31"
    assert redact(line) == line


@given(st.uuids())
def test_uuids_are_kept(value: object) -> None:
    assert redact(f"id={value}") == f"id={value}"
    assert UUID_RE.match(str(value))


# --- logging ---------------------------------------------------------------------------


def make_logger(formatter: logging.Formatter, with_filter: bool) -> tuple[logging.Logger, io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    if with_filter:
        handler.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.privacy.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    return logger, stream


def raise_with_number() -> None:
    raise ValueError(f"bad person {FNR}")


@pytest.mark.parametrize(
    ("formatter", "with_filter"),
    [
        (logging.Formatter("%(levelname)s %(message)s"), True),
        (RedactingFormatter("%(levelname)s %(message)s"), False),
        (RedactingFormatter("%(levelname)s %(message)s"), True),
    ],
)
def test_logging_masks_args_and_tracebacks(formatter: logging.Formatter, with_filter: bool) -> None:
    logger, stream = make_logger(formatter, with_filter)
    logger.info("order for %s from %s", FNR, "974760673")
    logger.warning("inline %s", f"{FNR[:6]} {FNR[6:]}")
    try:
        raise_with_number()
    except ValueError:
        logger.exception("failed for %s", FNR)
    logger.info("stack", stack_info=True, extra={"unused": FNR})
    out = stream.getvalue()
    assert FNR not in out
    assert FNR[6:] not in out
    assert out.count(MASK) == 4
    assert "order for *********** from 974760673" in out
    assert "Traceback (most recent call last)" in out
    assert f"ValueError: bad person {MASK}" in out


def test_filter_survives_unformattable_arguments() -> None:
    logger, stream = make_logger(logging.Formatter("%(message)s"), True)
    logger.info("two %s %s but one", FNR)
    logger.info("ok %d", 5)
    out = stream.getvalue()
    assert FNR not in out
    assert "could not be formatted" in out
    assert "ok 5" in out


def test_filter_redacts_exc_text_even_when_formatted_before() -> None:
    """A record whose traceback was already formatted by another handler is masked."""
    first_stream, second_stream = io.StringIO(), io.StringIO()
    plain = logging.StreamHandler(first_stream)  # some other handler, formatted first
    redacting = logging.StreamHandler(second_stream)
    redacting.addFilter(RedactingFilter())
    logger = logging.getLogger(f"test.privacy.{secrets.token_hex(4)}")
    logger.propagate = False
    logger.addHandler(plain)
    logger.addHandler(redacting)
    try:
        raise_with_number()
    except ValueError:
        logger.exception("boom")
    assert FNR in first_stream.getvalue()  # proves the exc_text was cached in clear
    assert FNR not in second_stream.getvalue()
    assert MASK in second_stream.getvalue()
