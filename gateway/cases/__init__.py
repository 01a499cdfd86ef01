"""Case services by stage of a case's life, each in the caller's transaction.

``records`` (facts, lookups, numbering, audit) → ``transitions`` (carry out what the
state machine decided) → ``opening`` / ``events`` (what happens to a case) →
``delivery_results`` (a notice's trip through the outbox) and ``retention``. They
never import staff mail or intake: they emit what happened (``gateway.effects``)
and ``gateway.app`` hands it on. This module names the services callers use.
"""

from gateway.cases.delivery_results import (
    NoticeDelivery,
    auto_confirm_due,
    notice_delivered,
    notice_failed,
    notice_may_go,
)
from gateway.cases.events import (
    amend,
    attended,
    close,
    confirm_notice,
    no_show,
    summon,
    test_missed,
    test_taken,
    withdraw,
)
from gateway.cases.opening import Registration, open_case_from_order, open_letter_case, register
from gateway.cases.records import (
    CaseNotFound,
    audit,
    facts_of,
    get_case,
    next_case_number,
    unit_settings,
)

__all__ = [
    "CaseNotFound",
    "NoticeDelivery",
    "Registration",
    "amend",
    "attended",
    "audit",
    "auto_confirm_due",
    "close",
    "confirm_notice",
    "facts_of",
    "get_case",
    "next_case_number",
    "no_show",
    "notice_delivered",
    "notice_failed",
    "notice_may_go",
    "open_case_from_order",
    "open_letter_case",
    "register",
    "summon",
    "test_missed",
    "test_taken",
    "unit_settings",
    "withdraw",
]
