"""htmlChecks(): the XHTML rules of the FHIR narrative (txt-1, txt-2), with the standard library's XML parser.

https://hl7.org/fhir/R4/narrative.html: the narrative is an XHTML fragment, a single `div` in the XHTML
namespace, holding only the basic formatting elements and attributes of HTML 4.0 chapters 7-11
(without 9.4, `ins`/`del`) and 15, `a` (name or href), images and style attributes; no head, body,
external stylesheet, deprecated elements, scripts, forms, base/link/xlink, frames, iframes or objects
(txt-1); and some non-whitespace content (txt-2). The tables below are this project's reading of
those chapters. Event handler attributes (`on*`) and `javascript:`/`vbscript:` URLs are script and
are refused wherever they appear; a DOCTYPE or entity declaration is refused before parsing.
"""
from __future__ import annotations

import re
import xml.etree.ElementTree as ElementTree
from typing import Any

XHTML = "http://www.w3.org/1999/xhtml"
XML_NS = "http://www.w3.org/XML/1998/namespace"

# HTML 4.0 chapters 7 (structure), 8 (language), 9 but 9.4 (text), 10 (lists), 11 (tables),
# 15 (alignment, font style, rules) without its deprecated elements; `a` and `img`
ALLOWED_ELEMENTS = frozenset({
    "div", "span", "h1", "h2", "h3", "h4", "h5", "h6", "address", "bdo",
    "em", "strong", "dfn", "code", "samp", "kbd", "var", "cite", "abbr", "acronym", "blockquote", "q",
    "sub", "sup", "p", "br", "pre",
    "ul", "ol", "li", "dl", "dt", "dd",
    "table", "caption", "thead", "tfoot", "tbody", "colgroup", "col", "tr", "th", "td",
    "tt", "i", "b", "big", "small", "hr",
    "a", "img",
})
# core and language attributes, the table and list attributes of the same chapters, a and img
ALLOWED_ATTRIBUTES = frozenset({
    "id", "class", "style", "title", "lang", "dir",
    "href", "name", "hreflang", "rel", "rev", "charset", "type",
    "src", "alt", "longdesc", "height", "width", "usemap", "ismap", "border", "hspace", "vspace",
    "align", "valign", "char", "charoff", "summary", "cellspacing", "cellpadding", "frame", "rules",
    "span", "colspan", "rowspan", "scope", "abbr", "axis", "headers", "nowrap", "bgcolor",
    "start", "value", "compact", "cite", "datetime", "clear", "noshade", "size",
})
# what the narrative rules name as forbidden, for a precise message
FORBIDDEN_ELEMENTS = {
    "script": "scripts", "noscript": "scripts", "form": "forms", "input": "forms", "button": "forms",
    "select": "forms", "textarea": "forms", "option": "forms", "label": "forms", "fieldset": "forms",
    "head": "a head", "body": "a body", "html": "a document", "title": "a head",
    "style": "stylesheets", "link": "base/link", "base": "base/link", "meta": "a head",
    "frame": "frames", "frameset": "frames", "iframe": "iframes", "object": "objects", "embed": "objects",
    "applet": "objects", "param": "objects",
    "font": "deprecated elements", "basefont": "deprecated elements", "center": "deprecated elements",
    "strike": "deprecated elements", "s": "deprecated elements", "u": "deprecated elements",
    "dir": "deprecated elements", "menu": "deprecated elements", "isindex": "deprecated elements",
    "ins": "document changes (HTML 4.0 section 9.4)", "del": "document changes (HTML 4.0 section 9.4)",
}
_SCRIPT_URL = re.compile(r"^\s*(javascript|vbscript)\s*:", re.IGNORECASE)
_DECLARATION = re.compile(r"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


def narrative_problems(div: Any) -> list[tuple[str, str]]:
    """(invariant key, problem) for a Narrative.div value; empty when it passes htmlChecks()."""
    if not isinstance(div, str):
        return [("txt-1", "The narrative must be an XHTML string")]
    if _DECLARATION.search(div):
        return [("txt-1", "The narrative may not contain a DOCTYPE or entity declaration")]
    try:
        root = ElementTree.fromstring(div)
    except ElementTree.ParseError as exc:
        return [("txt-1", f"The narrative is not well-formed XHTML ({exc})")]
    problems: list[tuple[str, str]] = []
    namespace, local = _split(root.tag)
    if local != "div":
        problems.append(("txt-1", f"The narrative must be a single <div>, not <{local}>"))
    if namespace != XHTML:
        problems.append(("txt-1", f"The narrative <div> must be in the XHTML namespace {XHTML}"
                                  f"{f', not {namespace}' if namespace else ''}"))
    for element in root.iter():
        problems.extend(_element_problems(element))
    if not _has_content(root):
        problems.append(("txt-2", "The narrative must have some non-whitespace content"))
    return problems


def html_checks(div: Any) -> bool:
    """The FHIRPath htmlChecks() function: True when the narrative passes every rule."""
    return not narrative_problems(div)


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        namespace, _, local = tag[1:].partition("}")
        return namespace, local
    return "", tag


def _element_problems(element: ElementTree.Element) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    namespace, local = _split(element.tag)
    if namespace != XHTML:
        problems.append(("txt-1", f"<{local}> is not in the XHTML namespace"))
    if local in FORBIDDEN_ELEMENTS:
        problems.append(("txt-1", f"<{local}> is not allowed in a narrative (no {FORBIDDEN_ELEMENTS[local]})"))
    elif local not in ALLOWED_ELEMENTS:
        problems.append(("txt-1", f"<{local}> is not one of the XHTML elements a narrative may use"))
    for attribute, value in element.attrib.items():
        attr_ns, attr_name = _split(attribute)
        if attr_ns == XML_NS and attr_name == "lang":
            continue
        if attr_ns:
            problems.append(("txt-1", f"The attribute {attr_name} of <{local}> (namespace {attr_ns}) is not "
                                      "allowed in a narrative"))
        elif attr_name.lower().startswith("on"):
            problems.append(("txt-1", f"The event handler {attr_name} of <{local}> is not allowed in a "
                                      "narrative (no scripts)"))
        elif attr_name not in ALLOWED_ATTRIBUTES:
            problems.append(("txt-1", f"The attribute {attr_name} of <{local}> is not allowed in a narrative"))
        elif attr_name in ("href", "src", "longdesc", "cite", "usemap") and _SCRIPT_URL.match(value):
            problems.append(("txt-1", f"The {attr_name} of <{local}> is a script URL (no scripts)"))
        elif attr_name == "style" and "expression(" in value.lower():
            problems.append(("txt-1", f"The style of <{local}> holds a script expression (no scripts)"))
    return problems


def _has_content(root: ElementTree.Element) -> bool:
    for element in root.iter():
        if _split(element.tag)[1] == "img":
            return True
        if (element.text and element.text.strip()) or (element is not root and element.tail
                                                        and element.tail.strip()):
            return True
    return False
