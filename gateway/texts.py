"""What people read: the words for every code, and the Jinja2 environment (bokmål).

Everything a staff member or a jurist at the prosecuting authority reads is built
from the tables here, so a code (``no_show``, ``betinget_patalaunnlatelse``) or an
English technical reason never reaches a person: the tables are the one place a
code becomes words. Templates live in ``gateway/templates``; ``StrictUndefined``
makes a missing value a loud error in tests instead of a silently blank line in a
letter to the police.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from functools import lru_cache
from typing import Any, Literal

from jinja2 import Environment, PackageLoader, StrictUndefined

from gateway.clock import OSLO
from gateway.domain.closing import REASONS as CLOSE_REASONS
from gateway.domain.facts import STATUS_WORDS

NameMode = Literal["full", "initials", "none"]

# The one table of what a state is called (gateway.domain.facts), keyed by its value.
STATUS_NB: dict[str, str] = {status.value: words for status, words in STATUS_WORDS.items()}

# What a state means, where a heading needs more than the word (digest, staff guide).
STATUS_NOTE: dict[str, str] = {
    "needs_registration": "brev fra politiet som driftsansvarlig må registrere",
    "awaiting_summons": "ingen samtale er avtalt nå",
    "summoned": "samtale er avtalt",
    "noncompliant": "varsel til påtalemyndigheten venter",
    "fulfilled": "saken står åpen til prøvetiden er ute",
    "notified": "varselet er sendt",
    "withdrawn": "påtalemyndigheten har trukket ordren",
    "closed": "saken er avsluttet",
}

REACTION_NB: dict[str, str] = {
    "betinget_patalaunnlatelse": "betinget påtaleunnlatelse",
    "betinget_dom": "betinget dom",
    "ungdomsstraff": "ungdomsstraff",
    "ungdomsoppfolging": "ungdomsoppfølging",
    "annen": "annen reaksjon",
}

# A meeting's outcome (``Meeting.outcome``; None is a meeting still ahead).
OUTCOME_NB: dict[str | None, str] = {
    None: "avtalt",
    "attended": "møtte",
    "no_show": "møtte ikke",
    "cancelled": "avlyst",
}

BREACH_NB: dict[str, str] = {
    "ikke_mott": "møtte ikke til samtale",
    "prove_ikke_tatt": "tok ikke pålagt rusmiddelprøve",
}

# A notice's state as staff read it (``Notice.status``).
NOTICE_STATE_NB: dict[str, str] = {
    "draft": "utkast, ikke sendt",
    "queued": "bekreftet, venter på sending",
    "sent": "sendt",
    "cancelled": "trukket tilbake",
    "dead": "kunne ikke sendes",
}

# How a written summons went out (``Summons.channel``, free text staff may set).
SUMMONS_CHANNEL_NB: dict[str, str] = {
    "brev": "brev",
    "post": "brev",
    "digipost": "digital post (Digipost)",
    "eboks": "digital post (e-Boks)",
    "digital": "digital post",
    "digital_post": "digital post",
    "svarut": "digital post (SvarUt)",
    "altinn": "Altinn",
    "epost": "e-post",
    "e-post": "e-post",
    "sms": "SMS",
    "telefon": "telefon",
}

# What sending a notice through a channel of each type means, true to what that
# channel confirms: every receipt is a hand-over, never proof that someone read it.
SENT_VIA_NB: dict[str, str] = {
    "spool": "lagt i utboksen til påtalemyndigheten",
    "altinn": "sendt i Altinn",
    "eformidling": "sendt med eFormidling",
    "svarut": "sendt med SvarUt",
    "smtp": "sendt på e-post",
    "graph": "sendt på e-post",
    "ews": "sendt på e-post",
    "imap": "sendt på e-post",
}

# Where an inbound message came from (a channel's type).
RECEIVED_VIA_NB: dict[str, str] = {
    "spool": "mappen for innkommende filer",
    "altinn": "Altinn-innboksen",
    "eformidling": "eFormidling",
    "graph": "e-postkassen",
    "ews": "e-postkassen",
    "imap": "e-postkassen",
}

# Kinds of outbound message (``OutboxItem.kind``).
OUTBOX_KIND_NB: dict[str, str] = {
    "alert": "e-post til saksbehandlerne",
    "digest": "daglig oversikt til saksbehandlerne",
    "reply": "svar på en kommando",
    "notice": "varsel til påtalemyndigheten",
}

# Why something went wrong, by the start of the technical reason intake and the
# outbox record (English, for the log). Staff read the Norwegian; the technical
# detail stays in the log and in «russak quarantine» / «russak outbox».
REASON_NB: tuple[tuple[str, str], ...] = (
    ("invalid order:", "Ordren følger ikke det avtalte formatet, så gatewayen kan ikke lese den."),
    ("unreadable mail", "E-posten kunne ikke leses. Den er skadet eller i et format gatewayen ikke kjenner."),
    ("message too large", "Meldingen er større enn gatewayen tar imot."),
    (
        "no configured unit serves",
        "Ordren er adressert til en kommune eller et organisasjonsnummer som ingen enhet i gatewayen "
        "tar imot ordrer for.",
    ),
    (
        "order by e-mail from a sender that is not",
        "En ordre kom på e-post fra en avsender som ikke står på listen over godkjente avsendere "
        "fra politiet eller enheten.",
    ),
    (
        "mail is neither an order nor from",
        "E-posten inneholder ingen ordre og kommer ikke fra en godkjent avsender.",
    ),
    (
        "order forwarded by staff of another unit",
        "En ansatt videresendte en ordre som gjelder en annen enhet enn sin egen.",
    ),
    (
        "endring forwarded by staff",
        "En ansatt videresendte en endring for en sak som ikke hører til enheten.",
    ),
    (
        "tilbakekall forwarded by staff",
        "En ansatt videresendte en tilbakekalling for en sak som ikke hører til enheten.",
    ),
    (
        "automatic mail",
        "E-posten er skrevet av en maskin (for eksempel et fraværssvar), og er ikke behandlet.",
    ),
    ("internal error", "Det oppstod en feil i gatewayen da meldingen ble behandlet."),
    (
        "crashed the gateway",
        "Meldingen fikk gatewayen til å stoppe flere ganger, og er derfor satt til side.",
    ),
    ("PermanentError", "Meldingen kunne ikke leveres: mottakeren eller kanalen avviste den."),
    ("TransientError", "Meldingen kunne ikke leveres: kanalen svarer ikke."),
    ("ChannelError", "Meldingen kunne ikke leveres: kanalen avviste den."),
    (
        "gave up after",
        "Meldingen kunne ikke leveres: kanalen har ikke svart på lenge, og gatewayen har sluttet å prøve.",
    ),
    ("unexpected", "Det oppstod en feil i gatewayen under sendingen."),
    (
        "no longer reportable",
        "Bruddet kan ikke lenger meldes, fordi saken er endret (for eksempel registrert MØTT).",
    ),
)
REASON_UNKNOWN = "Årsaken er teknisk."
REASON_DETAIL = "Driftsansvarlig finner detaljene i loggen."

# Why an unsent notice was cancelled (``Notice.cancel_reason``, set by the rules).
CANCEL_REASON_NB: tuple[tuple[str, str], ...] = (
    ("breaches no longer reportable", "bruddet kan ikke lenger meldes (saken er endret)"),
    ("no longer reportable", "bruddet kan ikke lenger meldes (saken ble endret før sending)"),
    ("re-summoned", "personen er innkalt på nytt"),
    ("order withdrawn", "påtalemyndigheten trakk ordren"),
    ("case closed", "saken ble avsluttet"),
)


def explain_reason(reason: str | None) -> str:
    """A Norwegian explanation of a technical reason; never the English text itself."""
    text = (reason or "").strip()
    for prefix, words in REASON_NB:
        if text.startswith(prefix):
            return words
    return REASON_UNKNOWN


def explain_cancel(reason: str | None) -> str:
    text = (reason or "").strip()
    for prefix, words in CANCEL_REASON_NB:
        if text.startswith(prefix):
            return words
    return "saken er endret"


def words(table: Mapping[Any, str], code: Any, fallback: str = "–") -> str:
    """The words for ``code``; an unknown code shows ``fallback``, never itself."""
    if code is None and None not in table:
        return fallback
    return table.get(code, fallback)


def reaction_nb(code: str | None) -> str:
    return words(REACTION_NB, code, "ikke oppgitt" if code is None else "annen reaksjon")


def summons_channel_nb(code: str | None) -> str:
    if not code:
        return "ukjent kanal"
    return SUMMONS_CHANNEL_NB.get(code.strip().lower(), code.strip())


def count_nb(n: int, singular: str, plural: str) -> str:
    """``1 prøve``, ``4 prøver``: singular only for exactly one."""
    return f"{n} {singular if n == 1 else plural}"


def join_nb(items: Iterable[str]) -> str:
    """``a``, ``a og b``, ``a, b og c``."""
    parts = [i for i in items if i]
    if len(parts) <= 1:
        return "".join(parts)
    return ", ".join(parts[:-1]) + " og " + parts[-1]


def initials(name: str) -> str:
    """``Ola Nordmann`` -> ``O. N.``; hyphenated parts keep their hyphen (``A.-M. B.``)."""
    out = []
    for part in name.split():
        pieces = [p[0].upper() + "." for p in part.split("-") if p]
        if pieces:
            out.append("-".join(pieces))
    return " ".join(out)


def shown_name(name: str | None, mode: NameMode) -> str | None:
    """How much of a name a mail body may carry (``Unit.staff_names``)."""
    if not name or mode == "none":
        return None
    return name if mode == "full" else initials(name)


def address_text(address: Mapping[str, Any] | None) -> str | None:
    """``Storgata 1, 2930 Bagn`` from the stored address (lines, postal code, city)."""
    if not address:
        return None
    post = " ".join(p for p in (address.get("postal_code"), address.get("city")) if p)
    parts = [*address.get("lines", []), post]
    return ", ".join(p for p in parts if p) or None


def actor_words(actor: str | None) -> str | None:
    """Who confirmed a notice, as staff read it (an address, or who acted for them)."""
    if not actor:
        return None
    if actor.startswith("system:auto"):
        return "automatisk, da fristen for bekreftelse var ute"
    if actor.startswith("system:"):
        return "gatewayen"
    if actor.startswith("cli:"):
        return "driftsansvarlig"
    return actor


def close_words(code: str | None) -> str | None:
    """A close reason in words (``gateway.domain.closing``); a reason stored as free
    text before reasons became codes is shown as it was written."""
    if not code:
        return None
    known = CLOSE_REASONS.get(code)
    return known[1] if known else code


def oslo(value: datetime) -> datetime:
    """The one conversion from a stored instant (UTC) to what a person reads (Oslo)."""
    return value.astimezone(OSLO)


WEEKDAYS = ("mandag", "tirsdag", "onsdag", "torsdag", "fredag", "lørdag", "søndag")


def _as_date(value: date | datetime | str) -> date | datetime:
    if isinstance(value, str):
        return datetime.fromisoformat(value) if "T" in value else date.fromisoformat(value)
    return value


def nb_date(value: date | datetime | str | None) -> str:
    """``3.12.2026``; an instant gets its Oslo time too (``3.12.2026 kl. 10:00``)."""
    if value is None or value == "":
        return "–"
    value = _as_date(value)
    if isinstance(value, datetime):
        local = oslo(value)
        return f"{local.day}.{local.month}.{local.year} kl. {local:%H:%M}"
    return f"{value.day}.{value.month}.{value.year}"


def nb_day(value: date | datetime | str | None) -> str:
    """The date alone, also for an instant (its Oslo date)."""
    if value is None or value == "":
        return "–"
    value = _as_date(value)
    if isinstance(value, datetime):
        value = oslo(value).date()
    return f"{value.day}.{value.month}.{value.year}"


def nb_weekday(value: date) -> str:
    """``torsdag 3.12.2026``."""
    return f"{WEEKDAYS[value.weekday()]} {nb_date(value)}"


def nb_time(value: datetime) -> str:
    """``HH:MM`` in Oslo time, for a meeting's start."""
    return f"{oslo(value):%H:%M}"


def nb_clock(value: time) -> str:
    return f"{value:%H:%M}"


def nb_meeting(on: date, starts_at: datetime | None = None, place: str | None = None) -> str:
    """``3.12.2026 kl. 10:00, Kontoret``: a meeting's day, Oslo time and place."""
    text = nb_date(on)
    if starts_at is not None:
        text += f" kl. {nb_time(starts_at)}"
    if place:
        text += f", {place}"
    return text


def nb_next_meeting(value: datetime | None) -> str:
    """``Case.next_meeting_at``: midnight Oslo stands for a meeting with no time set."""
    if value is None:
        return "–"
    local = oslo(value)
    if (local.hour, local.minute) == (0, 0):
        return nb_day(value)
    return nb_date(value)


# Commands a case in each state still obeys by mail (before registration only these;
# once it is withdrawn or closed, none).
_BEFORE_REGISTRATION = ("AVSLUTT", "STATUS", "HJELP")


def usable_in(actions: Iterable[str], status: str | None) -> list[str]:
    """The suggested commands a case in ``status`` would obey (a reminder may be due
    for a case whose state has since changed what it accepts)."""
    if status in ("withdrawn", "closed"):
        return []
    if status == "needs_registration":
        return [a for a in actions if a.startswith(_BEFORE_REGISTRATION)]
    return list(actions)


@lru_cache(maxsize=1)
def environment() -> Environment:
    env = Environment(
        loader=PackageLoader("gateway", "templates"),
        undefined=StrictUndefined,
        autoescape=False,  # noqa: S701 - plain-text mail, never HTML
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters["nbdate"] = nb_date
    env.filters["nbday"] = nb_day
    env.filters["nbtime"] = nb_time
    env.filters["nbweekday"] = nb_weekday
    env.filters["nbnextmeeting"] = nb_next_meeting
    env.filters["status_nb"] = lambda s: words(STATUS_NB, s, "ukjent")
    env.filters["status_note"] = lambda s: words(STATUS_NOTE, s, "")
    env.filters["reaction_nb"] = reaction_nb
    env.filters["outcome_nb"] = lambda s: words(OUTCOME_NB, s, "ukjent")
    env.filters["breach_nb"] = lambda s: words(BREACH_NB, s, "brudd på vilkår")
    env.filters["channel_nb"] = summons_channel_nb
    env.filters["join_nb"] = join_nb
    env.filters["usable_in"] = usable_in
    env.globals["count_nb"] = count_nb
    return env


def render(template: str, /, **context: Any) -> str:
    return environment().get_template(template).render(**context)
