"""A police letter with no structured order: a case for staff to complete.

The suggestions are only hints read from the letter's text (candidate identity
numbers, case references, dates, attachment names); staff confirm every value.
"""

from __future__ import annotations

import json
import re

from sqlalchemy.orm import Session

from gateway import cases
from gateway.config import Unit as UnitSettings
from gateway.context import Gateway
from gateway.domain.identifiers import find_identity_numbers
from gateway.messages.mail import MailContent
from gateway.messages.results import IntakeResult
from gateway.models import Case

_CASE_REF = re.compile(r"\b(\d{8,12}|\d{2,4}[-/]\d{3,8}(?:[-/]\d{1,4})?)\b")
_DATE = re.compile(r"\b(\d{1,2}\.\d{1,2}\.\d{4}|\d{4}-\d{2}-\d{2})\b")


def take_letter(
    gw: Gateway, session: Session, mail: MailContent, unit: UnitSettings, original: bytes | None
) -> IntakeResult:
    text = f"{mail.subject}\n{mail.body_text}"
    suggestions = {
        "national_ids": find_identity_numbers(text)[:5],
        "case_references": list(
            dict.fromkeys(m.group(1) for m in _CASE_REF.finditer(text) if len(m.group(1)) != 11)
        )[:5],
        "dates": list(dict.fromkeys(m.group(1) for m in _DATE.finditer(text)))[:10],
        "attachments": list(mail.other_attachments)[:10],
    }
    case = cases.open_letter_case(gw, session, unit, suggestions, mail.sender, original)
    return IntakeResult("letter", case.number, "needs registration")


def suggestions_of(case: Case) -> dict[str, list[str]]:
    return json.loads(case.suggestions) if case.suggestions else {}
