"""The XML contracts of the gateway: XSD files and example documents.

Kept as a data package beside ``gateway`` so the schemas ship in the wheel and the
police (or anyone testing against us) can be handed the exact files the code uses.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["EXAMPLES_DIR", "NOTICE_NS", "NOTICE_XSD", "ORDER_NS", "ORDER_XSD"]

_HERE = Path(__file__).parent

ORDER_NS = "urn:no:russak:oppmoteordre:1"
"""Namespace of the inbound order (root ``Oppmoteordre``)."""

NOTICE_NS = "urn:no:russak:melding:1"
"""Namespace of the outbound notice (root ``MeldingOmManglendeOppfyllelse``)."""

ORDER_XSD: Path = _HERE / "oppmoteordre-1.xsd"
NOTICE_XSD: Path = _HERE / "melding-1.xsd"
EXAMPLES_DIR: Path = _HERE / "examples"
