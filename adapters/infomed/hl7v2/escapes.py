"""HL7 v2 escape sequences (v2.8 chapter 2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\.br\\ and \\Xhh\\.

Applied to leaf values only, after splitting on the delimiters: an escaped `|` must not split a field.
A \\Xhh\\ escape's bytes are read as the same bytes sent raw would be (`normalise.decode`): in the
message's character set, and without MSH-18 as UTF-8, else windows-1252 (`fallback`). Bytes that are no
text there are `UndecodableEscape`, never a silent replacement character."""

from __future__ import annotations

import re


class UndecodableEscape(ValueError):
    """A hex escape whose bytes are no text in the message's character set."""

    def __init__(self, sequence: str, charset: str):
        super().__init__(f"the escape {sequence} is not a character of {charset}")
        self.sequence = sequence


def unescape(value: str, *, field: str = "|", component: str = "^", repetition: str = "~", escape: str = "\\",
             subcomponent: str = "&", charset: str = "utf-8", fallback: str | None = None) -> str:
    if escape not in value:
        return value
    simple = {"F": field, "S": component, "T": subcomponent, "R": repetition, "E": escape, ".br": "\n",
              "H": "", "N": ""}
    pattern = re.compile(re.escape(escape) + r"(.*?)" + re.escape(escape))

    def replace(match: re.Match) -> str:
        code = match.group(1)
        if code in simple:
            return simple[code]
        if code.startswith("X") and len(code) > 1 and re.fullmatch(r"(?:[0-9A-Fa-f]{2})+", code[1:]):
            data = bytes.fromhex(code[1:])
            for codec in (charset, fallback):
                if codec:
                    try:
                        return data.decode(codec)
                    except UnicodeDecodeError:
                        continue
            raise UndecodableEscape(match.group(0), charset)
        if code.startswith(".sp") or code.startswith(".in") or code.startswith(".ti") or code in (".fi", ".nf"):
            return "\n" if code.startswith(".sp") else ""
        return match.group(0)  # unknown: kept as sent, so nothing is silently lost

    return pattern.sub(replace, value)
