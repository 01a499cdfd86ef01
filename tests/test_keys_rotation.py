"""Key rotation undoes a leaked key: after ``key rotate`` + ``key reencrypt`` nothing in
the database opens with the old key, not the tokens and not the identity hash.

Through the real database of the ``gw`` fixture (SQLite, and PostgreSQL when
available), with orders taken in and keys rotated by the real ``russak`` command.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from gateway import rekey
from gateway.clock import SimulatedClock
from gateway.domain.identifiers import synthetic_identity_number
from gateway.models import Person
from gateway.privacy import Cipher, DecryptionError, install_cipher, load_key_file, rotate_key_file
from tests import factories

BIRTH = date(1990, 5, 17)
_files = itertools.count()


class Site:
    """The gateway under test and the ``russak`` command pointed at its configuration."""

    def __init__(self, gw: Any, config: Path, key_file: Path, clock: SimulatedClock) -> None:
        self.gw = gw  # the Gateway (its class is imported from nowhere here, so it may move)
        self.config = config
        self.key_file = key_file
        self.clock = clock

    def russak(self, *args: str) -> tuple[int, str]:
        from gateway.cli import main

        result = CliRunner().invoke(main, ["--config", str(self.config), *args], obj=self.clock)
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout

    def ingest(self, tmp: Path, *orders: bytes) -> None:
        files = []
        for order in orders:
            path = tmp / f"order-{next(_files)}.xml"
            path.write_bytes(order)
            files.append(str(path))
        code, out = self.russak("ingest", *files)
        assert code == 0, out
        assert out.count(": case RUS-") == len(orders), out

    def use_key_file(self) -> Cipher:
        """Load the key file as a restarted daemon would, and make the gateway use it."""
        cipher = load_key_file(self.key_file)
        self.gw.cipher = cipher
        install_cipher(cipher)
        return cipher

    def stored(self, sql: str) -> list[tuple[object, ...]]:
        with self.gw.session() as session:
            return [tuple(row) for row in session.execute(text(sql)).all()]

    def tokens(self) -> list[bytes]:
        """Every encrypted value in the database, as stored."""
        found = []
        for mapped, name, key in rekey.encrypted_columns():
            rows = self.stored(f"SELECT {name} FROM {mapped.name} WHERE {name} IS NOT NULL ORDER BY {key}")
            found += [bytes(value) for (value,) in rows]  # type: ignore[call-overload]
        return found


@pytest.fixture
def site(gw: Any, clock: SimulatedClock, tmp_path: Path) -> Iterator[Site]:
    settings = gw.settings
    (tmp_path / "orders").mkdir()
    yield Site(gw, settings.source, settings.resolve_path(settings.gateway.key_file), clock)
    install_cipher(gw.cipher)


def candidates(birth: date) -> list[str]:
    """Every (synthetic) identity number one birth date allows: what a brute force tries."""
    return [n for i in range(1000) if (n := synthetic_identity_number(birth, i)) is not None]


def brute_force(cipher: Cipher, stored_hash: str, birth: date) -> str | None:
    """The attack a leaked key enables: hash each candidate of one birth date, compare."""
    return next((n for n in candidates(birth) if cipher.keyed_hash(n) == stored_hash), None)


def test_reencrypt_rekeys_the_identity_hash_so_the_old_key_recovers_nothing(
    site: Site, tmp_path: Path
) -> None:
    nid = factories.fnr(BIRTH)
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))
    old = load_key_file(site.key_file)
    ((stored_hash,),) = site.stored("SELECT national_id_hash FROM persons")
    assert stored_hash == old.keyed_hash(nid)
    assert brute_force(old, str(stored_hash), BIRTH) == nid  # the threat: seconds with the old key

    code, out = site.russak("key", "rotate")
    assert code == 0, out
    new = load_key_file(site.key_file)
    code, out = site.russak("key", "reencrypt")
    assert code == 0 and "re-encrypted" in out, out

    ((stored_hash,),) = site.stored("SELECT national_id_hash FROM persons")
    assert stored_hash != old.keyed_hash(nid)  # the old key's hash of the true number: no match
    assert brute_force(old, str(stored_hash), BIRTH) is None
    assert stored_hash == new.keyed_hash(nid)  # the new key's: match
    newest = Cipher([_first_key(site.key_file)])
    assert all(newest.is_current(token) for token in site.tokens())
    assert not any(_opens(old, token) for token in site.tokens())

    # Only the newest key is needed now: the key check and all data open with it alone.
    site.key_file.write_text(_first_line(site.key_file) + "\n")
    code, out = site.russak("case", "show", _case_number(site), "--json", "--reveal")
    assert code == 0 and nid in out, out


def test_same_person_lookup_matches_between_rotate_and_reencrypt(site: Site, tmp_path: Path) -> None:
    nid = factories.fnr(BIRTH)
    other = factories.fnr(date(1991, 6, 18))
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))
    rotate_key_file(site.key_file)
    new = site.use_key_file()
    with site.gw.session() as session:
        found = session.scalars(select(Person.id).where(Person.national_id_hash.in_(new.keyed_hashes(nid))))
        assert len(found.all()) == 1  # stored under the old key, found with the new cipher
        missing = session.scalars(
            select(Person.id).where(Person.national_id_hash.in_(new.keyed_hashes(other)))
        )
        assert missing.all() == []
    assert new.keyed_hashes(nid)[0] == new.keyed_hash(nid)  # newest first
    rekey.rekey(site.gw)
    with site.gw.session() as session:
        rows = session.scalars(select(Person.national_id_hash)).all()
    assert rows == [new.keyed_hash(nid)]


def _same_person_alerts(site: Site) -> int:
    return len(site.stored("SELECT key FROM outbox WHERE key LIKE '%same-person'"))


def test_the_core_sees_the_same_person_without_a_rotation(site: Site, tmp_path: Path) -> None:
    """Control for the test below: the alert this looks for exists and is found."""
    nid = factories.fnr(BIRTH)
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))
    assert _same_person_alerts(site) == 1


def test_the_core_sees_the_same_person_after_rotate_before_reencrypt(site: Site, tmp_path: Path) -> None:
    nid = factories.fnr(BIRTH)
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))
    assert site.russak("key", "rotate")[0] == 0
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=nid, birth=BIRTH))  # new key
    assert _same_person_alerts(site) == 1


@pytest.mark.parametrize("crash_in", ["rotate", "keyed_hash"])
def test_reencrypt_is_restartable_after_a_crash_midway(
    site: Site, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, crash_in: str
) -> None:
    births = [date(1990, 5, day) for day in range(10, 15)]
    numbers = [factories.fnr(birth) for birth in births]
    site.ingest(
        tmp_path / "orders",
        *(
            factories.order_xml(national_id=n, birth=b, guardians=1)
            for n, b in zip(numbers, births, strict=True)
        ),
    )
    old = load_key_file(site.key_file)
    rotate_key_file(site.key_file)
    new = site.use_key_file()
    total = len(site.tokens())

    real = getattr(Cipher, crash_in)
    calls = 0

    def crashing(self: Cipher, value: bytes | str) -> object:
        nonlocal calls
        calls += 1
        if calls > 3:
            raise RuntimeError("simulated crash")
        return real(self, value)

    monkeypatch.setattr(Cipher, crash_in, crashing)
    with pytest.raises(RuntimeError, match="simulated crash"):
        rekey.rekey(site.gw, batch=2)
    monkeypatch.setattr(Cipher, crash_in, real)

    # The batches before the crash were committed, the one in hand rolled back.
    hashes = [h for (h,) in site.stored("SELECT national_id_hash FROM persons ORDER BY id")]
    current = sum(new.is_current(t) for t in site.tokens())
    if crash_in == "rotate":
        assert 0 < current < total
        assert hashes == [old.keyed_hash(n) for n in numbers]
    else:
        assert current == total
        assert hashes[:2] == [new.keyed_hash(n) for n in numbers[:2]]
        assert hashes[2:] == [old.keyed_hash(n) for n in numbers[2:]]

    second = rekey.rekey(site.gw, batch=2)  # the restart finishes the job ...
    key_check = 1 if crash_in == "rotate" else 0  # the token in gateway_meta, re-keyed after the data
    assert second.tokens == total - current + key_check  # ... without redoing what was done
    assert all(new.is_current(t) for t in site.tokens())
    hashes = [h for (h,) in site.stored("SELECT national_id_hash FROM persons ORDER BY id")]
    assert hashes == [new.keyed_hash(n) for n in numbers]
    assert rekey.rekey(site.gw, batch=2).total == 0  # and a third run has nothing left to do


def test_a_hash_without_its_number_is_cleared(site: Site, tmp_path: Path) -> None:
    """It cannot be re-keyed, and under the old key it would still give the number away."""
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=factories.fnr(BIRTH), birth=BIRTH))
    with site.gw.session() as session:
        session.execute(text("UPDATE persons SET national_id = NULL"))
    rotate_key_file(site.key_file)
    site.use_key_file()
    report = rekey.rekey(site.gw)
    assert report.cleared_hashes == 1
    assert site.stored("SELECT national_id_hash FROM persons") == [(None,)]


def _opens(cipher: Cipher, token: bytes) -> bool:
    try:
        cipher.decrypt(token)
    except DecryptionError:
        return False
    return True


def _first_line(key_file: Path) -> str:
    return next(line for line in key_file.read_text().splitlines() if line.startswith("russak-key-1:"))


def _first_key(key_file: Path) -> bytes:
    return base64.urlsafe_b64decode(_first_line(key_file).removeprefix("russak-key-1:"))


def _case_number(site: Site) -> str:
    ((number,),) = site.stored("SELECT number FROM cases")
    return str(number)


def test_an_unreadable_value_stops_reencrypt_naming_the_row_not_the_data(site: Site, tmp_path: Path) -> None:
    site.ingest(tmp_path / "orders", factories.order_xml(national_id=factories.fnr(BIRTH), birth=BIRTH))
    with site.gw.session() as session:
        session.execute(text("UPDATE persons SET first_name = :junk"), {"junk": b"not a token"})
    rotate_key_file(site.key_file)
    site.use_key_file()
    with pytest.raises(
        DecryptionError, match=r"persons\.first_name of row \d+: stored value cannot be decrypted"
    ):
        rekey.rekey(site.gw)
