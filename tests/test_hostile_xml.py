"""Order XML inside the size limit that would still cost minutes in XSD validation.

Each attack is built here and run through the real ``parse_order``; the main ones also
through intake, inside a police mail, and through ``russak ingest``. Without the
streaming pass, about 1 MB of attributes the schema does not allow cost 50 CPU seconds
and more in libxml2's XSD validation (``benchmarks/attacks.py`` measures both sides).
"""

from __future__ import annotations

import hashlib
import re
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from lxml import etree

from gateway import samples
from gateway.cli import main
from gateway.clock import SimulatedClock
from gateway.context import Gateway
from gateway.intake import pipeline
from gateway.messages import xmlcaps
from gateway.messages.orders import OrderError, XmlLimits, parse_order
from gateway.messages.xmlcaps import measure_shape
from gateway.ports import RawMessage
from schemas import EXAMPLES_DIR
from tests import factories

NY_VOKSEN = (EXAMPLES_DIR / "ny-voksen.xml").read_bytes()
MERKNAD = b"<Merknad>Personen har \xc3\xb8nsket samtale p\xc3\xa5 ettermiddagstid.</Merknad>"
ELEVEN_DIGITS = re.compile(r"\d{11}")


def refused(data: bytes, **kwargs: object) -> str:
    """Parse ``data``, expect OrderError, return its checked message.

    The CPU bound is generous on purpose (the uncapped attacks cost 1 to over 100 s;
    refused ones about 0.05 s, see benchmarks/attacks.py): it only catches a cap that
    stopped working, and must not fail on a loaded machine.
    """
    started = time.thread_time()
    with pytest.raises(OrderError) as info:
        parse_order(data, **kwargs)  # type: ignore[arg-type]
    assert time.thread_time() - started < 5.0, "the attack was not stopped early"
    message = str(info.value)
    assert "\n" not in message and message.strip()
    assert ELEVEN_DIGITS.search(message) is None
    return message


def with_merknad(inner: bytes, attributes: bytes = b"") -> bytes:
    """The example order with Merknad's content and attributes replaced."""
    assert MERKNAD in NY_VOKSEN
    return NY_VOKSEN.replace(MERKNAD, b"<Merknad" + attributes + b">" + inner + b"</Merknad>")


def attribute_flood(count: int, element: bytes = b"Merknad") -> bytes:
    attributes = b"".join(b' a%d="x"' % i for i in range(count))
    if element == b"Merknad":
        return with_merknad(b"x", attributes)
    return with_merknad(b"<" + element + attributes + b"/>")


# ------------------------------------------------------------------ the attacks


@pytest.mark.parametrize("count", [40_000, 90_000])
def test_attribute_flood_on_one_element_is_refused_before_the_xsd(count: int) -> None:
    data = attribute_flood(count)
    assert len(data) < 1_048_576  # inside the size limit: the size check alone lets it in
    assert refused(data) == f"too many attributes on element Merknad ({count}, limit 20)"


def test_an_element_the_schema_does_not_know_is_not_named() -> None:
    data = attribute_flood(50, element=b"x14859410023")
    assert refused(data) == "too many attributes on an element (50, limit 20)"


def test_attributes_spread_over_many_elements_are_capped_in_total() -> None:
    element = b"<x" + b"".join(b' a%d="x"' % i for i in range(19)) + b"/>"
    assert refused(with_merknad(element * 300)) == "too many attributes (more than 5000)"


def test_element_flood_is_refused() -> None:
    assert refused(with_merknad(b"<a/>" * 100_000)) == "too many elements (more than 2000)"


def test_namespace_flood_is_refused() -> None:
    declarations = b"".join(b' xmlns:p%d="urn:x:%d"' % (i, i) for i in range(30_000))
    assert refused(with_merknad(b"x", declarations)) == "too many namespace declarations (more than 32)"


@pytest.mark.parametrize("depth", [33, 200, 100_000])
def test_deep_nesting_is_refused(depth: int) -> None:
    message = refused(with_merknad(b"<a>" * depth + b"</a>" * depth))
    assert message == "document nested deeper than 32 levels"


def test_long_texts_are_refused() -> None:
    long_name = NY_VOKSEN.replace(b"<Fornavn>Ola</Fornavn>", b"<Fornavn>" + b"O" * 9_000 + b"</Fornavn>")
    assert refused(long_name) == "the text of element Fornavn is too long (9000 characters, limit 8192)"
    long_value = NY_VOKSEN.replace(b'antall="1"', b'antall="' + b"1" * 100_000 + b'"')
    assert refused(long_value) == "an attribute value is too long (100000 characters, limit 8192)"
    long_tail = with_merknad(b"<a/>" + b"t" * 50_000 + b"<b/>")
    assert refused(long_tail) == "text between elements is too long (50000 characters, limit 8192)"


def test_caps_are_configurable_and_max_depth_still_works() -> None:
    assert refused(NY_VOKSEN, limits=XmlLimits(max_elements=10)) == "too many elements (more than 10)"
    assert refused(NY_VOKSEN, max_depth=3) == "document nested deeper than 3 levels"
    assert parse_order(NY_VOKSEN, limits=XmlLimits(max_depth=3), max_depth=4).order_id


def test_existing_refusals_come_first() -> None:
    doctype = b'<?xml version="1.0"?><!DOCTYPE r [<!ENTITY x "y">]><r a="1" b="2">&x;</r>'
    assert "DTDs and entity declarations are not allowed" in refused(
        doctype, limits=XmlLimits(max_attributes=1)
    )
    utf7 = b'<?xml version="1.0" encoding="UTF-7"?><r/>'
    assert "unsupported encoding utf-7" in refused(utf7)


def test_a_document_the_streaming_pass_cannot_read_is_never_validated(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If the pass fails as XML where the full parse succeeds, the caps would be
    skipped: such a document is refused instead."""

    def broken(data: bytes) -> object:
        raise etree.XMLSyntaxError("simulated", 0, 1, 1)  # type: ignore[call-arg]

    monkeypatch.setattr(xmlcaps, "_events", broken)
    assert refused(NY_VOKSEN) == "not well-formed XML (the streaming check could not read it)"
    assert "not well-formed XML: line" in refused(b"<Oppmoteordre>")  # the real parser's reason


def test_a_parse_over_its_cpu_budget_is_refused() -> None:
    message = refused(NY_VOKSEN, cpu_seconds=1e-9)
    assert re.fullmatch(r"reading the order took too long \(\d+\.\d\d s CPU, limit 1e-09 s\)", message)
    assert parse_order(NY_VOKSEN, cpu_seconds=None).order_id


# ---------------------------------------------------- the largest valid order


def test_the_largest_valid_order_is_read_and_far_below_every_cap() -> None:
    data = samples.largest_valid_order()
    order = parse_order(data)
    assert order.person is not None and len(order.person.guardians) == 4
    assert order.remark is not None and len(order.remark) > 3_900
    shape = measure_shape(data, XmlLimits())
    assert shape is not None
    caps = XmlLimits()
    assert shape.elements * 20 < caps.max_elements
    assert shape.max_attributes_on_one * 6 <= caps.max_attributes_per_element
    assert shape.attributes * 100 < caps.max_attributes
    assert shape.depth * 6 <= caps.max_depth
    assert shape.namespaces * 32 == caps.max_namespaces
    assert shape.longest_text * 2 <= caps.max_text


# ------------------------------------------------------ through intake and CLI

ATTACKS = {
    "attribute flood": (attribute_flood(90_000), "too many attributes on element Merknad (90000, limit 20)"),
    "element flood": (with_merknad(b"<a/>" * 100_000), "too many elements (more than 2000)"),
    "deep nesting": (with_merknad(b"<a>" * 200 + b"</a>" * 200), "document nested deeper than 32 levels"),
}


def xml_message(gw: Gateway, data: bytes, kind: str = "xml") -> RawMessage:
    return RawMessage(
        channel="spool",
        external_id="sha256:" + hashlib.sha256(data).hexdigest(),
        content=data,
        kind=kind,  # type: ignore[arg-type]
        received_at=gw.clock.now(),
    )


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_intake_quarantines_the_attack(gw: Gateway, name: str) -> None:
    data, reason = ATTACKS[name]
    started = time.thread_time()
    result = pipeline.process(gw, xml_message(gw, data))
    assert time.thread_time() - started < 2
    assert (result.outcome, result.reason) == ("quarantined", f"invalid order: {reason}")


def test_intake_quarantines_the_attack_attached_to_a_police_mail(gw: Gateway) -> None:
    data, reason = ATTACKS["attribute flood"]
    mail = factories.mail(sender=factories.POLICE_SENDER, subject="Ordre", attachments=[("ordre.xml", data)])
    result = pipeline.process(gw, xml_message(gw, mail, kind="email"))
    assert (result.outcome, result.reason) == ("quarantined", f"invalid order: {reason}")


def test_russak_ingest_quarantines_the_attacks(tmp_path: Path) -> None:
    site = CliRunner().invoke(main, ["init", "--dir", str(tmp_path / "site")])
    assert site.exit_code == 0, site.output
    names = sorted(ATTACKS)
    files = []
    for index, name in enumerate(names):
        path = tmp_path / f"attack{index}.xml"
        path.write_bytes(ATTACKS[name][0])
        files.append(str(path))
    clock = SimulatedClock(datetime(2026, 11, 23, 8, 0, tzinfo=UTC))
    config = str(tmp_path / "site" / "russak.toml")
    result = CliRunner().invoke(main, ["--config", config, "ingest", *files], obj=clock)
    assert result.exit_code == 1
    lines = result.stdout.strip().splitlines()
    assert lines == [
        f"attack{index}.xml: quarantined invalid order: {ATTACKS[name][1]}"
        for index, name in enumerate(names)
    ]
