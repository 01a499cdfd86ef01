"""What happened, handed to whoever registered for it at wiring time.

The case services, intake and the outbox sit below the staff mail and the case
services respectively, so they cannot call upwards without import circles. Instead
they *emit* what happened (a case was opened, a notice was drafted, a message went
to quarantine) and ``gateway.app`` registers the handlers: staff alerts for the
case effects, the case services for a notice's delivery result, the staff command
handler for mail from staff. Handlers run synchronously in the emitter's
transaction, so an alert exists if and only if the change that caused it was
committed.

The registry itself is ``gateway.context.Handlers``. An effect that nobody handles
is a wiring bug, not a quiet no-op: ``emit`` raises, so a missing alert shows up in
the first test instead of in production.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.models import Case, Notice

# Case effects (emitted by gateway.cases) ----------------------------------------------


@dataclass(frozen=True)
class CaseOpened:
    case: Case


@dataclass(frozen=True)
class LetterReceived:
    """A police letter became a case to register; ``original`` is the mail as it came,
    which goes to the unit's staff as an attachment so they can read it."""

    case: Case
    original: bytes | None = None


@dataclass(frozen=True)
class SamePersonFound:
    case: Case
    others: tuple[str, ...]


@dataclass(frozen=True)
class CaseWithdrawn:
    case: Case


@dataclass(frozen=True)
class CaseAmended:
    case: Case


@dataclass(frozen=True)
class NoticeDrafted:
    case: Case
    notice: Notice


@dataclass(frozen=True)
class NoticeSent:
    case: Case
    notice: Notice


@dataclass(frozen=True)
class NoticeFailed:
    case: Case
    reason: str


# Intake effects --------------------------------------------------------------


@dataclass(frozen=True)
class Quarantined:
    entry_id: int
    channel: str
    reason: str
