"""The purge leaves nothing behind: every column and file is filled with marked data,
the retention time passes, and afterwards no table row (decrypted) and no spool file
holds the mark. This is the test of the list in ``gateway.cases.retention``."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from pathlib import Path

from sqlalchemy import select

from connectors.spool import drop_file
from gateway import cases
from gateway.app import open_gateway
from gateway.cases import retention
from gateway.clock import SimulatedClock, local_today
from gateway.config import load_settings
from gateway.delivery import outbox
from gateway.domain.closing import parse_close_reason
from gateway.intake import pipeline as intake
from gateway.models import Base, Case
from gateway.ops import daemon
from gateway.ports import RawMessage
from gateway.staff.commands import Command, perform
from tests import factories

MARK = "MERKEX"  # ASCII, so it survives every mail transfer encoding the spool writes


def _take(gw, data: bytes, kind: str = "email") -> intake.IntakeResult:  # type: ignore[no-untyped-def]
    msg = RawMessage("spool", "sha256:" + hashlib.sha256(data).hexdigest(), data, kind, gw.clock.now())  # type: ignore[arg-type]
    return intake.process(gw, msg)


def _marked_values(gw) -> list[str]:  # type: ignore[no-untyped-def]
    found = []
    with gw.session() as s:
        for table in Base.metadata.sorted_tables:
            for row in s.execute(select(table)):
                for column, value in zip(table.columns, row, strict=True):
                    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
                    if MARK in text:
                        found.append(f"{table.name}.{column.name}")
    return found


def test_purge_clears_every_place_personal_data_was_kept(tmp_path: Path, clock: SimulatedClock) -> None:
    cfg = factories.write_config(tmp_path / "gw", database=f"sqlite:///{tmp_path / 'gw' / 'russak.db'}")
    # files are dropped atomically here, so no settle time is needed
    options = 'path = "spool"\nkeep_processed = true'
    cfg.write_text(cfg.read_text().replace('path = "spool"', options))
    gw = open_gateway(load_settings(cfg), clock=clock, migrate=True)
    spool = tmp_path / "gw" / "spool"
    (spool / "inbox").mkdir(exist_ok=True)
    try:
        # a full case: person, guardians, meeting place, notice, close comment
        order = factories.order_xml(first_name=f"Ola{MARK}", last_name=f"Nord{MARK}", guardians=1)
        order = order.replace(
            b"</Oppmoteordre>", f"<Merknad>merknad {MARK}</Merknad></Oppmoteordre>".encode()
        )
        drop_file(spool / "inbox", "ordre.xml", order)
        daemon.cycle(gw)
        with gw.session() as s:
            (number,) = s.scalars(select(Case.number)).all()
        meeting = local_today(clock.now()) + timedelta(days=2)
        with gw.session() as s:
            case = cases.get_case(s, number)
            perform(gw, s, case, Command("summoned", on=meeting, place=f"Kontor {MARK}"), factories.STAFF)
        clock.advance(timedelta(days=3))
        with gw.session() as s:
            perform(gw, s, cases.get_case(s, number), Command("no-show"), factories.STAFF)
        with gw.session() as s:
            perform(gw, s, cases.get_case(s, number), Command("send-notice"), factories.STAFF)
        outbox.dispatch_due(gw)
        with gw.session() as s:
            cases.close(
                gw, s, cases.get_case(s, number), parse_close_reason(f"annet {MARK}"), factories.STAFF
            )
        # a letter never registered, a parked amendment, quarantine, an ignored mail
        letter = factories.mail(sender=factories.POLICE_SENDER, subject="Brev", body=f"Gjelder {MARK}")
        assert _take(gw, letter).outcome == "letter"
        parked = factories.order_xml(message_type="endring", refers_to="6f1c0c2e-0000-4000-8000-000000000001")
        parked = parked.replace(b"</Oppmoteordre>", f"<Merknad>{MARK}</Merknad></Oppmoteordre>".encode())
        assert _take(gw, parked, "xml").outcome == "parked"
        assert _take(gw, f"<x>{MARK}</x>".encode(), "xml").outcome == "quarantined"
        stranger = factories.mail(sender="noen@example.org", subject="Hei", body=MARK)
        assert _take(gw, stranger).outcome == "quarantined"
        drop_file(spool / "inbox", "brev.eml", factories.mail(sender="x@example.org", subject="y", body=MARK))
        daemon.cycle(gw)
        assert _marked_values(gw), "the test put no marked data in the database"
        assert any(MARK.encode() in p.read_bytes() for p in (spool / "processed").iterdir())

        clock.advance(timedelta(days=gw.settings.gateway.retention_days + 1))
        report = retention.purge(gw)
        assert report.cases and report.channel_files >= 1
        assert _marked_values(gw) == []
        for folder in ("processed", "rejected"):
            path = spool / folder
            left = (
                [p.name for p in path.iterdir() if MARK.encode() in p.read_bytes()] if path.exists() else []
            )
            assert left == [], f"spool/{folder} still holds personal data"
    finally:
        gw.close()
