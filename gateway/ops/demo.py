"""``russak demo``: four months of case life in a few seconds.

It sets up a real embedded-default gateway in a temporary directory (as ``russak
init`` does), puts a simulated clock in it, drops sample orders, staff commands and
a hostile file into the spool inbox, and runs the real daemon cycle
(``gateway.daemon.cycle``: poll, intake, reminders, dispatch) once per simulated
morning. Staff act the way they do in production: by mailing commands, which land
in the inbox as ``.eml`` files. At the end it checks the outcome and prints where
everything is, so a new operator can open the files and see what staff and police
would receive.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import click
from sqlalchemy import select

from gateway import cases, samples
from gateway.app import open_gateway
from gateway.clock import SimulatedClock, local_today
from gateway.config import load_settings
from gateway.context import Gateway
from gateway.models import Case, OutboxItem, QuarantineEntry
from gateway.ops import daemon
from gateway.ops.setup import initialise

START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 08:00 in Oslo
DAYS = 120

BILLION_LAUGHS = (
    b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    b'<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">'
    b'<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>'
    b'<Oppmoteordre xmlns="urn:no:russak:oppmoteordre:1">&lol3;</Oppmoteordre>'
)


@dataclass(frozen=True)
class Person:
    label: str
    first: str
    birth: date
    order_id: str
    reference: str


def _people() -> dict[str, Person]:
    def p(label: str, first: str, birth: date, ref: str) -> Person:
        return Person(label, first, birth, str(uuid.uuid4()), ref)

    return {
        "attends": p("adult who attends", "Ola", date(1995, 3, 14), "24810001"),
        "no_show": p("adult who does not attend (notified)", "Per", date(1988, 9, 2), "24810002"),
        "minor": p("16-year-old with guardians", "Kari", date(2010, 6, 1), "24810003"),
        "testing": p("drug testing, one test missed (notified)", "Lise", date(1999, 1, 20), "24810004"),
        "amended": p("endring arrives before its order", "Nils", date(1992, 12, 5), "24810005"),
        "withdrawn": p("order withdrawn (tilbakekall)", "Eva", date(1990, 7, 7), "24810006"),
    }


class Demo:
    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.clock = SimulatedClock(START)
        initialise(directory)
        # The demo drops every file atomically (``drop_file``), so it needs no settle time
        # and each simulated morning takes in what was dropped before it.
        config = directory / "russak.toml"
        config.write_text(
            config.read_text(encoding="utf-8").replace(
                'path = "spool"', 'path = "spool"\nsettle_seconds = 0', 1
            ),
            encoding="utf-8",
        )
        self.gw: Gateway = open_gateway(load_settings(directory / "russak.toml"), clock=self.clock)
        self.inbox = directory / "spool" / "inbox"
        self.people = _people()
        self.numbers: dict[str, str] = {}
        self.dropped = 0
        self.log: list[str] = []
        self.seen = 0

    # helpers ---------------------------------------------------------------------

    def today(self) -> date:
        return local_today(self.clock.now())

    def drop(self, name: str, data: bytes) -> None:
        self.dropped += 1
        tmp = self.inbox / f".{self.dropped:04d}-{name}"
        tmp.write_bytes(data)
        tmp.rename(self.inbox / f"{self.dropped:04d}-{name}")

    def order(self, key: str, **kw: object) -> None:
        who = self.people[key]
        self.drop(
            f"ordre-{key}.xml",
            samples.order_xml(
                order_id=who.order_id,
                first_name=who.first,
                birth=who.birth,
                case_reference=who.reference,
                decided=self.today() - timedelta(days=10),
                condition_end=self.today() + timedelta(days=730),
                attendance_deadline=self.today() + timedelta(days=60),
                sent=self.clock.now(),
                **kw,  # type: ignore[arg-type]
            ),
        )

    def command(self, key: str, text: str) -> None:
        number = self.numbers[key]
        self.drop(
            f"kommando-{key}.eml",
            samples.mail(subject=f"Re: [{number}] Varsel", body=text, when=self.clock.now()),
        )
        self.note(f"staff mail  [{number}] {text}")

    def note(self, text: str) -> None:
        self.log.append(f"  {self.today():%a %d.%m.%Y}  {text}")

    def cycle(self) -> None:
        report = daemon.cycle(self.gw)
        outcomes = Counter(report.outcomes)
        with self.gw.session() as session:
            sent = session.execute(
                select(OutboxItem.id, OutboxItem.kind).where(
                    OutboxItem.status == "sent", OutboxItem.id > self.seen
                )
            ).all()
        self.seen = max([self.seen, *(i for i, _k in sent)])
        kinds = Counter(kind for _i, kind in sent)
        if outcomes or set(kinds) - {"digest"}:
            parts = [f"took in {n} ({o})" for o, n in sorted(outcomes.items())]
            if kinds:
                parts.append("sent " + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())))
            self.note("daemon      " + "; ".join(parts))
        self._learn_numbers()

    def _learn_numbers(self) -> None:
        with self.gw.session() as session:
            for key, who in self.people.items():
                if key not in self.numbers:
                    number = session.scalar(select(Case.number).where(Case.order_id == who.order_id))
                    if number:
                        self.numbers[key] = number
                        self.note(f"case        {number} opened: {who.label}")

    def advance_to(self, day: int) -> None:
        target = START + timedelta(days=day)
        while self.clock.now() < target:
            self.clock.advance(timedelta(days=1))
            self.cycle()

    # the story -------------------------------------------------------------------

    def run(self) -> None:
        for key in ("attends", "no_show", "testing", "withdrawn"):
            self.order(key, tests=2 if key == "testing" else 0)
        self.order("minor", reaction="ungdomsoppfolging", guardians=2)
        # The endring is sent after its order but arrives first: it is parked.
        amended = self.people["amended"]
        self.drop(
            "endring.xml",
            samples.order_xml(
                message_type="endring",
                refers_to=amended.order_id,
                attendances=2,
                attendance_deadline=self.today() + timedelta(days=90),
                condition_end=self.today() + timedelta(days=800),
                sent=self.clock.now() + timedelta(minutes=5),
            ),
        )
        letter_fnr = samples.fnr(date(1985, 4, 30))
        self.drop(
            "brev-fra-politiet.eml",
            samples.mail(
                sender=samples.POLICE_SENDER,
                subject="Pålegg om oppmøte i rådgivende enhet",
                body=(
                    f"Gjelder Tor Brevik, f.nr. {letter_fnr[:6]} {letter_fnr[6:]}, sak 24810007.\n"
                    "Betinget påtaleunnlatelse, prøvetid til 30.11.2028. Vennlig hilsen påtalejurist."
                ),
                when=self.clock.now(),
            ),
        )
        self.drop("fiendtlig.xml", BILLION_LAUGHS)
        self.cycle()
        self.order("amended")
        self.cycle()

        self.advance_to(1)
        self._register_letter(letter_fnr)
        self.drop(
            "tilbakekall.xml",
            samples.order_xml(
                message_type="tilbakekall",
                refers_to=self.people["withdrawn"].order_id,
                sent=self.clock.now(),
            ),
        )
        meeting = self.today() + timedelta(days=7)
        for key in ("attends", "no_show", "testing", "minor", "amended"):
            self.command(key, f"INNKALT {meeting.day}.{meeting.month} 10:00 Kontoret")
        self.cycle()

        self.advance_to(9)  # the morning after the meeting: staff report what happened
        self.command("attends", "MØTT")
        self.command("no_show", "IKKE MØTT")
        self.command("testing", "MØTT")
        self.command("minor", "MØTT")
        self.command("amended", "MØTT")
        self.cycle()

        self.advance_to(10)
        self.command("no_show", "SEND VARSEL")
        self.command("testing", "PRØVE TATT " + f"{self.today():%d.%m}")
        self.cycle()

        self.advance_to(22)
        self.command("testing", "PRØVE IKKE TATT " + f"{self.today():%d.%m}")
        self.command("amended", "STATUS")
        self.cycle()
        self.advance_to(23)
        self.command("testing", "SEND VARSEL")
        self.cycle()
        self.advance_to(DAYS)

    def _register_letter(self, national_id: str) -> None:
        with self.gw.session() as session:
            case = session.scalars(select(Case).where(Case.status == "needs_registration")).one()
            cases.register(
                self.gw,
                session,
                case,
                cases.Registration(
                    national_id=national_id,
                    first_name="Tor",
                    last_name="Brevik",
                    case_reference="24810007",
                    condition_end=date(2028, 11, 30),
                    sender_org_number=samples.POLICE_ORG,
                    reaction="betinget_patalaunnlatelse",
                ),
                "cli:operator",
            )
            self.numbers["letter"] = case.number
            self.note(f"operator    {case.number} registered from the police letter (russak register)")

    # the account -------------------------------------------------------------------

    def report(self, elapsed: float) -> bool:
        with self.gw.session() as session:
            rows = session.execute(
                select(Case.number, Case.status, Case.attendances, Case.required_attendances).order_by(
                    Case.number
                )
            ).all()
            quarantined = session.scalars(select(QuarantineEntry.reason)).all()
        outbox_dir, mail_dir = self.dir / "spool" / "outbox", self.dir / "spool" / "mail"
        notices = sorted(outbox_dir.glob("*.xml"))
        mails = list(mail_dir.glob("*.eml"))
        kinds = Counter(p.name.split("_")[0] for p in mails)
        status = {number: st for number, st, _a, _r in rows}
        expected = {
            "attends": "fulfilled",
            "no_show": "notified",
            "minor": "fulfilled",
            "testing": "notified",
            "amended": "awaiting_summons",
            "withdrawn": "withdrawn",
            "letter": "awaiting_summons",
        }
        ok = all(status.get(self.numbers.get(k, "?")) == v for k, v in expected.items())
        ok &= len(notices) == 2 and len(quarantined) == 1
        echo = click.echo
        echo(f"russak-gateway demo: {DAYS} simulated days from {START.date()} in {elapsed:.1f} s\n")
        echo("What happened:")
        for line in self.log:
            echo(line)
        echo("\nCases at the end:")
        labels = {self.numbers.get(k): self.people[k].label for k in self.people} | {
            self.numbers.get("letter"): "plain letter, registered by the operator"
        }
        for number, st, att, req in rows:
            echo(f"  {number}  {st:<17} attended {att}/{req}  {labels.get(number, '')}")
        echo(f"\nQuarantine: {len(quarantined)} ({'; '.join(quarantined)})")
        echo(f"Notices to the police: {len(notices)} in {outbox_dir}")
        echo(
            f"Staff mail: {len(mails)} in {mail_dir} "
            f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items()))})"
        )
        echo(f"Database: {self.dir / 'russak.db'} (personal fields encrypted with {self.dir / 'russak.key'})")
        echo(
            f"\nChecks: {'ok' if ok else 'FAILED'} (attended cases never notified; "
            "no-show and missed test notified once;"
            " endring applied; tilbakekall without notice; hostile XML quarantined)"
        )
        return ok


def run_demo(keep: Path | None) -> None:
    directory = keep or Path(tempfile.mkdtemp(prefix="russak-demo-"))
    if keep is not None and keep.exists() and any(keep.iterdir()):
        raise click.UsageError(f"{keep} is not empty; the demo needs a fresh directory")
    started = time.monotonic()
    demo = Demo(directory)
    try:
        demo.run()
        ok = demo.report(time.monotonic() - started)
    finally:
        demo.gw.close()
    if keep is None:
        click.echo(f"\n(Files kept in {directory}; remove with: rm -r {directory})")
    if not ok:
        raise click.ClickException("demo outcome was not as expected")
