"""What intake and the staff commands say about one inbound message.

Shared by ``gateway.intake`` (which classifies a message) and ``gateway.staff``
(which answers staff mail), so it lives below both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The case tag staff keep in a subject, e.g. "[RUS-2026-0042]".
CASE_TAG = re.compile(r"\[(RUS-\d{4}-\d{4,})\]", re.IGNORECASE)


@dataclass(frozen=True)
class IntakeResult:
    outcome: str  # case amended withdrawn parked duplicate duplicate_order quarantined command ignored letter
    case_number: str | None = None
    reason: str | None = None

    def describe(self) -> str:
        """``outcome[ CASE][ reason]``, as ``russak ingest`` and the log print it."""
        return " ".join(p for p in (self.outcome, self.case_number, self.reason) if p)
