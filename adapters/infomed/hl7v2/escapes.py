"""HL7 v2 escape sequences (v2.8 chapter 2.7): \\F\\ \\S\\ \\T\\ \\R\\ \\E\\, \\.br\\ and \\Xhh\\.

Applied to leaf values only, after splitting on the delimiters: an escaped `|` must not split a field."""

from __future__ import annotations

import re


def unescape(value: str, *, field: str = "|", component: str = "^", repetition: str = "~", escape: str = "\\",
             subcomponent: str = "&", charset: str = "utf-8") -> str:
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
            return bytes.fromhex(code[1:]).decode(charset, errors="replace")
        if code.startswith(".sp") or code.startswith(".in") or code.startswith(".ti") or code in (".fi", ".nf"):
            return "\n" if code.startswith(".sp") else ""
        return match.group(0)  # unknown: kept as sent, so nothing is silently lost

    return pattern.sub(replace, value)
