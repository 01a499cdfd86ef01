"""The daily digest counts every open case but reads only the ones it lists, so a unit
with tens of thousands of open cases gets a readable mail and the daemon does not read
(and decrypt) every case once a day."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select, update

from gateway.clock import local_today
from gateway.context import Gateway
from gateway.intake import pipeline as intake
from gateway.models import Case
from gateway.ports import RawMessage
from gateway.privacy import Cipher
from gateway.staff import digest
from tests import factories


def take_orders(gw: Gateway, count: int) -> list[str]:
    numbers = []
    for _ in range(count):
        data = factories.order_xml()
        raw = RawMessage("spool", "sha256:" + hashlib.sha256(data).hexdigest(), data, "xml", gw.clock.now())
        numbers.append(intake.process(gw, raw).case_number or "")
    return numbers


def test_a_digest_lists_the_first_cases_of_each_status_and_counts_the_rest(
    gw_sqlite: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gw = gw_sqlite
    numbers = take_orders(gw, 12)
    fulfilled = numbers[-3:]
    with gw.session() as session:
        session.execute(update(Case).where(Case.number.in_(fulfilled)).values(status="fulfilled"))
    monkeypatch.setattr(digest, "SHOWN_PER_STATUS", 5)
    decrypted = [0]
    plain = Cipher.decrypt

    def counting(self: Cipher, token: bytes) -> bytes:
        decrypted[0] += 1
        return plain(self, token)

    monkeypatch.setattr(Cipher, "decrypt", counting)
    with gw.session() as session:
        waiting_numbers = session.scalars(select(Case.number).where(Case.status == "awaiting_summons"))
        assert sorted(waiting_numbers) == numbers[:9]
        body = digest.render_digest(gw, session, "testdal", local_today(gw.clock.now()))

    waiting, done = body.split("\n\n", 1)[1].split("Oppfylt", 1)
    assert ": 9\n" in waiting
    assert [n for n in numbers[:9] if n in waiting] == numbers[:5]  # the first five by number
    assert "… og 4 til. Driftsansvarlig kan liste alle med «russak cases»." in waiting
    assert ": 3\n" in done
    assert all(n in done for n in fulfilled)
    assert " til. " not in done
    # the names of the 8 listed cases (first and last name each), not of all 12
    assert decrypted[0] <= 2 * 8
