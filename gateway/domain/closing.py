"""Why a case was closed: a fixed list, plus an optional short comment.

A free-text reason is a place where anything can be written, an identity number or
a test result included ("AVSLUTT flyttet, fnr …, positiv prøve …" was seen). So the
reason is one of a few codes, and what staff add beyond it is a comment that is
stored encrypted like the other personal fields, and refused outright when it holds
anything shaped like an identity number.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.domain.checks import TransitionError
from gateway.domain.identifiers import has_identity_shaped
from gateway.domain.words import fold

# code -> how staff write it (first word, case and å/ø folded) and how it reads
REASONS: dict[str, tuple[tuple[str, ...], str]] = {
    "flyttet": (("flyttet", "flytta", "moved"), "flyttet fra kommunen"),
    "tilbakekalt": (("tilbakekalt", "withdrawn"), "tilbakekalt av påtalemyndigheten"),
    "provetid_ute": (("provetid", "provetiden", "expired"), "prøvetiden er ute"),
    "annet": (("annet", "other"), "annen grunn"),
}
WITHDRAWN_BY_POLICE = "tilbakekalt"
MAX_COMMENT = 200


@dataclass(frozen=True)
class CloseReason:
    code: str
    comment: str | None = None

    @property
    def words(self) -> str:
        return REASONS[self.code][1]


def parse_close_reason(text: str) -> CloseReason:
    """``flyttet``, ``prøvetiden er ute``, ``annet: …``; the rest is the comment."""
    words = text.strip().split(maxsplit=1)
    if not words:
        raise TransitionError(_usage())
    first = fold(words[0]).strip(".,:;").lower()
    code = next((c for c, (spellings, _) in REASONS.items() if first in spellings), None)
    if code is None:
        raise TransitionError(_usage())
    comment = words[1].strip(" ,:;-") if len(words) > 1 else ""
    if code == "provetid_ute" and fold(comment.split(maxsplit=1)[0] if comment else "").lower() in (
        "er",
        "ute",
    ):
        comment = ""  # "prøvetiden er ute" is the reason itself, not a comment
    if has_identity_shaped(comment):
        raise TransitionError(
            "Kommentaren ser ut til å inneholde et fødselsnummer. Skriv aldri fødselsnummer, "
            "prøvesvar eller helseopplysninger i en kommentar."
        )
    if len(comment) > MAX_COMMENT:
        raise TransitionError(f"Kommentaren er for lang (høyst {MAX_COMMENT} tegn).")
    return CloseReason(code, comment or None)


def _usage() -> str:
    return (
        "Oppgi grunn: flyttet, tilbakekalt, prøvetiden er ute eller annet (for eksempel «AVSLUTT flyttet»)."
    )
