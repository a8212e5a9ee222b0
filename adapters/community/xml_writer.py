"""A small streaming XML writer: one line of UTF-8, every value escaped, no line break anywhere.

Why not lxml for writing: the ebRIM of one document is some 150 elements, each an lxml call that
resolves its namespace; written as text the whole request costs about half (measured side by side:
bench/README.md), on the deliverer's hot path. What is written here is held to the same bar as a tree would be: the tests
parse every request, validate it against the XSDs and read it back.

Escaping: `&`, `<`, `>` and (in attributes) `"` as entities; line breaks and tabs as character
references, so the platform's one-line rule holds whatever a value holds. A character XML 1.0 cannot
carry at all (NUL and the other C0 controls, U+FFFE/U+FFFF, lone surrogates) is refused: NotXml.
"""

from __future__ import annotations

import re

_TEXT = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;", "\n": "&#10;"})
_ATTRIBUTE = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "\r": "&#13;",
                            "\n": "&#10;", "\t": "&#9;"})
_NOT_XML = re.compile("[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
# Most values need nothing done: one search decides (the translation tables cost more than the search).
_SPECIAL = re.compile('[&<>"\t\n\r]|[^\t\n\r\u0020-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]')


class NotXml(ValueError):
    """A value holds a character XML 1.0 cannot carry."""


def _checked(value: str) -> str:
    bad = _NOT_XML.search(value)
    if bad:
        raise NotXml(f"character U+{ord(bad.group()):04X} cannot be written in XML (in {value[:40]!r})")
    return value


class XmlWriter:
    def __init__(self) -> None:
        self._parts: list[str] = []
        self._open: list[str] = []

    def start(self, tag: str, attributes: dict[str, str] | None = None, *, declarations: str = "") -> None:
        self._parts.append(f"<{tag}{declarations}{self._attributes(attributes)}>")
        self._open.append(tag)

    def end(self) -> None:
        self._parts.append(f"</{self._open.pop()}>")

    def empty(self, tag: str, attributes: dict[str, str] | None = None, *, declarations: str = "") -> None:
        self._parts.append(f"<{tag}{declarations}{self._attributes(attributes)}/>")

    def text_element(self, tag: str, text: str, attributes: dict[str, str] | None = None) -> None:
        if _SPECIAL.search(text) is not None:
            text = _checked(text).translate(_TEXT)
        self._parts.append(f"<{tag}{self._attributes(attributes)}>{text}</{tag}>")

    # Shapes written in one piece: the same bytes as their start/empty/text_element/end calls, a fraction
    # of the calls (the ebRIM of one document is ~30 slots and ~15 names: the writer's calls were most
    # of its cost, bench/README.md).
    def text_list(self, tag: str, attributes: dict[str, str] | None, list_tag: str, item_tag: str,
                  texts: list[str]) -> None:
        """`<tag …><list_tag><item_tag>text</item_tag>…</list_tag></tag>` (an ebRIM Slot)."""
        items = "".join(f"<{item_tag}>{text if _SPECIAL.search(text) is None else _checked(text).translate(_TEXT)}"
                        f"</{item_tag}>" for text in texts)
        self._parts.append(f"<{tag}{self._attributes(attributes)}><{list_tag}>{items}</{list_tag}></{tag}>")

    def wrapped_empty(self, tag: str, child_tag: str, child_attributes: dict[str, str]) -> None:
        """`<tag><child_tag …/></tag>` (an ebRIM Name or Description)."""
        self._parts.append(f"<{tag}><{child_tag}{self._attributes(child_attributes)}/></{tag}>")

    def result(self) -> bytes:
        if self._open:
            raise ValueError(f"elements left open: {self._open}")
        return "".join(self._parts).encode("utf-8")

    @staticmethod
    def _attributes(attributes: dict[str, str] | None) -> str:
        if not attributes:
            return ""
        return "".join(f' {name}="{value}"' if _SPECIAL.search(value) is None
                       else f' {name}="{_checked(value).translate(_ATTRIBUTE)}"' for name, value in attributes.items())
