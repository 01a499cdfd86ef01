"""A streaming pass that bounds a document's shape before the XSD sees it.

Staying under the size limit is not enough. libxml2's XSD validation of about 1 MB
of attributes the schema does not allow, all on one element, took 50 CPU seconds and
more (over 115 s in ``benchmarks/attacks.py``; time grows with the square of the
attribute count), and an lxml call cannot be interrupted once it has started. So
before validating, one ``iterparse`` pass with the same safe settings as
``safe_parser`` (no DTD, no entities, no network, no huge trees) counts elements,
attributes (per element and in total), namespace declarations, depth and the length
of every text, tail and attribute value. It stops at the first count over its cap,
so a flood costs only the bytes read before it.

The caps come from the real schema (schemas/oppmoteordre-1.xsd) with wide headroom.
The largest valid order has about 90 elements, at most 3 attributes on one element
and 6 in all, depth 5, and no text longer than Merknad's 4,000 characters (see
``tests/test_hostile_xml.py``, which builds that order and checks it).

The pass throws its tree away as it goes. If it fails as XML the caller still runs
the real parse, which gives the proper message; if that parse succeeds where the
pass failed, the caller must refuse the document, or the caps could be bypassed.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from lxml import etree

from gateway.messages.xmlsafe import UnsafeXml

__all__ = ["XmlLimits", "XmlShape", "measure_shape"]

_ITERPARSE: Callable[..., Any] = etree.iterparse


@dataclass(frozen=True)
class XmlLimits:
    """Caps for one document. The defaults fit any valid order 20 times over or more."""

    max_elements: int = 2_000
    max_attributes_per_element: int = 20
    max_attributes: int = 5_000
    max_namespaces: int = 32
    max_depth: int = 32
    max_text: int = 8_192  # characters in one text, tail or attribute value

    @classmethod
    def unlimited(cls) -> XmlLimits:
        """No caps at all: for the benchmark's "before" figures, never in production."""
        big = 1 << 62
        return cls(big, big, big, big, big, big)


@dataclass(frozen=True)
class XmlShape:
    """What the pass counted (for tests and the benchmark)."""

    elements: int
    attributes: int
    max_attributes_on_one: int
    namespaces: int
    depth: int
    longest_text: int


def measure_shape(
    data: bytes, limits: XmlLimits, describe: Callable[[str], str] = lambda tag: "an element"
) -> XmlShape | None:
    """Stream ``data`` and raise ``UnsafeXml`` at the first count over a cap.

    ``describe`` names an element for the message (the caller knows which names are
    the schema's and so safe to print). Returns the counts, or None when the bytes are
    not well-formed XML: then the real parse must fail too and gives the reason.
    """
    try:
        return _measure(data, limits, describe)
    except UnsafeXml:
        raise
    except (etree.XMLSyntaxError, LookupError, UnicodeError, ValueError):
        return None


def _events(data: bytes) -> Iterator[tuple[str, Any]]:
    yield from _ITERPARSE(
        io.BytesIO(data),
        events=("start", "end", "start-ns"),
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        dtd_validation=False,
        huge_tree=False,
        remove_comments=True,
        remove_pis=True,
    )


def _measure(data: bytes, limits: XmlLimits, describe: Callable[[str], str]) -> XmlShape:
    elements = attributes = widest = namespaces = depth = deepest = longest = 0
    for event, item in _events(data):
        if event == "start-ns":
            namespaces += 1
            if namespaces > limits.max_namespaces:
                raise UnsafeXml(f"too many namespace declarations (more than {limits.max_namespaces})")
            continue
        element: etree._Element = item
        if event == "start":
            depth += 1
            elements += 1
            if depth > limits.max_depth:
                raise UnsafeXml(f"document nested deeper than {limits.max_depth} levels")
            if elements > limits.max_elements:
                raise UnsafeXml(f"too many elements (more than {limits.max_elements})")
            count = len(element.attrib)
            if count > limits.max_attributes_per_element:
                name = describe(str(element.tag))
                raise UnsafeXml(
                    f"too many attributes on {name} ({count}, limit {limits.max_attributes_per_element})"
                )
            attributes += count
            if attributes > limits.max_attributes:
                raise UnsafeXml(f"too many attributes (more than {limits.max_attributes})")
            widest = max(widest, count)
            for value in element.attrib.values():
                longest = _check_text(str(value), "an attribute value", limits, longest)
            deepest = max(deepest, depth)
            continue
        # "end": the element's text and its children's tails are complete now.
        depth -= 1
        longest = _check_text(element.text, f"the text of {describe(str(element.tag))}", limits, longest)
        for child in element:
            longest = _check_text(child.tail, "text between elements", limits, longest)
        shell: Any = element  # the lxml stubs lack clear's keep_tail
        shell.clear(keep_tail=True)  # only counts are kept, not the tree
    return XmlShape(elements, attributes, widest, namespaces, deepest, longest)


def _check_text(text: str | None, what: str, limits: XmlLimits, longest: int) -> int:
    size = len(text) if text else 0
    if size > limits.max_text:
        raise UnsafeXml(f"{what} is too long ({size} characters, limit {limits.max_text})")
    return max(longest, size)
