"""When a notice of non-compliance may exist: the one gate every notice passes.

A notice is built only from ``reportable_breaches(facts)``, and the dispatcher asks
the same function again, in the transaction that claims the notice for sending. So
a person who attended as required (or whose order was withdrawn or closed) can never
be reported for not attending, whatever order events arrive in, by construction:
there is no other code path that produces the breaches a notice carries.

Interpretation (to confirm with the product owner): "attended as required" governs
the attendance breach (``ikke_mott``). A missed drug test, where the prosecutor set
testing as a condition, is a separate reportable breach (``prove_ikke_tatt``), and it
stops being reportable once the required number of tests has been taken.
"""

from __future__ import annotations

from gateway.domain.facts import BreachFact, BreachType, CaseFacts, NoticeState

__all__ = ["BreachFact", "BreachType", "NoticeState", "may_send", "reportable_breaches"]


_ENDED = frozenset({"withdrawn", "closed", "needs_registration"})


def reportable_breaches(facts: CaseFacts) -> tuple[BreachFact, ...]:
    """The breaches the prosecuting authority must hear about right now, if any."""
    if facts.status.value in _ENDED:
        return ()
    found: list[BreachFact] = []
    if not facts.attendance_fulfilled:
        found.extend(BreachFact("ikke_mott", on) for on in facts.no_shows)
    if facts.tests_required > 0 and not facts.tests_fulfilled:
        found.extend(BreachFact("prove_ikke_tatt", on) for on in facts.tests_missed)
    return tuple(sorted(found, key=lambda b: (b.on, b.type)))


def may_send(facts: CaseFacts, breaches: tuple[BreachFact, ...]) -> bool:
    """True only if every breach the notice carries is still reportable now."""
    if not breaches:
        return False
    allowed = set(reportable_breaches(facts))
    return all(b in allowed for b in breaches)
