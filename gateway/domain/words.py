"""How the gateway reads a word staff typed: upper case, æ/ø/å folded to ASCII, so
MØTT, Møtt, MOTT and MOETT, or «prøvetiden» and PROVETIDEN, are the same word."""

from __future__ import annotations

import unicodedata


def fold(text: str) -> str:
    text = text.upper().replace("Ø", "O").replace("OE", "O").replace("Æ", "AE").replace("Å", "A")
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
