"""Is this event true to the case's facts, by the clock? Checked before anything is stored.

These are the rules that keep the gateway from telling the police something that
did not happen: a no-show needs a booked meeting whose start has passed and a
written summons for it; an attendance or a test lies between the order and today
(and a test inside its testing window); a meeting is booked for the future and
inside the condition period. A fact that is already registered is not an error
but not news either: ``AlreadyRecorded`` says so, and nothing changes.

An attendance on a day with no booked meeting (a meeting arranged by phone, say) is
allowed on purpose: staff know things the gateway did not book. ``is_unbooked``
tells the caller, so the audit and the confirmation say so. A no-show is never
allowed without a booking: nobody can miss a meeting that was not set.

Messages are Norwegian: staff read them in command replies and the CLI.
"""

from __future__ import annotations

from datetime import date, datetime

from gateway.domain.facts import OSLO, CaseFacts, NoticeState, oslo_date


class TransitionError(ValueError):
    """The event is not allowed in the case's current state (Norwegian message)."""


class AlreadyRecorded(TransitionError):
    """The same fact is already registered; answering it again changes nothing."""


def nb(day: date) -> str:
    return f"{day.day}.{day.month}.{day.year}"


def _clock(at: datetime) -> str:
    return f"{at.astimezone(OSLO):%H:%M}"


def _not_before_order(facts: CaseFacts, on: date, what: str) -> None:
    if facts.ordered_on is not None and on < facts.ordered_on:
        raise TransitionError(f"{what} {nb(on)} er før ordren ({nb(facts.ordered_on)}).")


def _not_in_future(on: date, today: date, what: str) -> None:
    if on > today:
        raise TransitionError(f"{what} {nb(on)} har ikke skjedd ennå; registrer det etterpå.")


def check_summons(facts: CaseFacts, on: date, starts_at: datetime | None, now: datetime) -> None:
    today = oslo_date(now)
    booking = facts.booking
    if booking is not None and booking.on == on and booking.starts_at == starts_at:
        raise AlreadyRecorded(f"Samtalen {nb(on)} er allerede registrert.")
    if starts_at is not None and starts_at <= now:
        raise TransitionError(f"Samtalen {nb(on)} kl. {_clock(starts_at)} er ikke fram i tid.")
    if on < today:
        raise TransitionError(f"Samtalen {nb(on)} er ikke fram i tid.")
    if facts.condition_end is not None and on > facts.condition_end:
        raise TransitionError(f"Samtalen {nb(on)} er etter at prøvetiden går ut ({nb(facts.condition_end)}).")


def check_attendance(facts: CaseFacts, on: date, now: datetime) -> None:
    if on in facts.attended_on:
        raise AlreadyRecorded(f"Oppmøte {nb(on)} er allerede registrert.")
    _not_in_future(on, oslo_date(now), "Oppmøtet")
    _not_before_order(facts, on, "Oppmøtet")
    booking = facts.booking
    if booking is not None and booking.on == on and booking.starts_at is not None and booking.starts_at > now:
        raise TransitionError(
            f"Samtalen {nb(on)} begynner kl. {_clock(booking.starts_at)}; registrer oppmøtet etterpå."
        )


def attendance_day(facts: CaseFacts, now: datetime) -> date:
    """What "MØTT" without a date means: the booked meeting, once its day has come
    (answered the morning after, it is still that meeting), else today."""
    booking = facts.booking
    if booking is not None and booking.on <= oslo_date(now):
        return booking.on
    return oslo_date(now)


def is_unbooked(facts: CaseFacts, on: date) -> bool:
    """An attendance on a day with no booked meeting (allowed, and audited as such)."""
    return facts.booking is None or facts.booking.on != on


def no_show_day(facts: CaseFacts, on: date | None, now: datetime) -> date:
    """The day of the booked meeting the no-show is for, once it may be registered."""
    booking = facts.booking
    if booking is None:
        if on is not None and on in facts.no_show_on:
            raise AlreadyRecorded(f"Manglende oppmøte {nb(on)} er allerede registrert.")
        raise TransitionError(
            "Ingen samtale er avtalt i saken; manglende oppmøte kan bare registreres for en avtalt samtale."
        )
    if on is not None and on != booking.on:
        if on in facts.no_show_on:
            raise AlreadyRecorded(f"Manglende oppmøte {nb(on)} er allerede registrert.")
        raise TransitionError(
            f"Den avtalte samtalen er {nb(booking.on)}, ikke {nb(on)}; "
            "manglende oppmøte kan bare registreres for den avtalte samtalen."
        )
    if not booking.summons_sent:
        raise TransitionError(
            f"Det er ikke registrert noen skriftlig innkalling til samtalen {nb(booking.on)}."
        )
    today = oslo_date(now)
    if booking.starts_at is not None:
        if booking.starts_at > now:
            raise TransitionError(
                f"Samtalen {nb(booking.on)} kl. {_clock(booking.starts_at)} har ikke begynt ennå; "
                "manglende oppmøte kan registreres når tiden er passert."
            )
    elif booking.on >= today:
        raise TransitionError(
            f"Samtalen {nb(booking.on)} har ikke noe klokkeslett; manglende oppmøte kan registreres "
            "fra dagen etter."
        )
    return booking.on


def check_confirm(facts: CaseFacts) -> None:
    """SEND VARSEL twice answers truthfully: confirmed already, or sent already."""
    if facts.notice is NoticeState.QUEUED:
        raise AlreadyRecorded("Varselet er allerede bekreftet og venter på utsending.")
    if facts.notice is NoticeState.SENT:
        raise AlreadyRecorded("Varselet er allerede sendt til påtalemyndigheten.")
    if facts.notice is not NoticeState.DRAFT:
        raise TransitionError("Det finnes ikke noe utkast til varsel å sende.")


def check_test(facts: CaseFacts, on: date, taken: bool, now: datetime) -> None:
    for day, was_taken in facts.tests_on:
        if day == on:
            if was_taken == taken:
                raise AlreadyRecorded(f"Prøven {nb(on)} er allerede registrert.")
            raise TransitionError(
                f"Prøven {nb(on)} er allerede registrert som {'tatt' if was_taken else 'ikke tatt'}."
            )
    _not_in_future(on, oslo_date(now), "Prøven")
    _not_before_order(facts, on, "Prøven")
    if facts.tests_from is not None and on < facts.tests_from:
        raise TransitionError(f"Prøven {nb(on)} er før testperioden begynner ({nb(facts.tests_from)}).")
    if facts.tests_to is not None and on > facts.tests_to:
        raise TransitionError(f"Prøven {nb(on)} er etter at testperioden er slutt ({nb(facts.tests_to)}).")
