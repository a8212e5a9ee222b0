"""The CH EPR value sets a person picks document metadata from (class, type, facility type, practice
setting), with their names in French, German, Italian and English.

`ch_value_sets.json` is extracted from the CH terminology (hl7ch/ch-term, the DocumentEntry value sets) by
`scripts/ch_value_sets.py`; its `source` names the commit. Pickers show the names in the page's language;
the record keeps the SNOMED CT code and the English display, as an ITI-65 client sends them.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

from adapters.cara.model import Code

VALUE_SETS = Path(__file__).parent / "ch_value_sets.json"
KINDS = ("class", "type", "facility", "setting")


@dataclass(frozen=True)
class Concept:
    code: Code
    names: dict[str, str]  # fr, de, it, en

    def name(self, lang: str) -> str:
        return self.names.get(lang) or self.code.display or self.code.code


@functools.cache
def value_set(kind: str) -> tuple[Concept, ...]:
    """The concepts of one value set (`KINDS`), in the published order."""
    if kind not in KINDS:
        raise KeyError(f"no value set {kind!r}")
    data = json.loads(VALUE_SETS.read_text(encoding="utf-8"))["sets"][kind]
    return tuple(Concept(Code(c["system"], c["code"], c["display"]), dict(c["names"])) for c in data["concepts"])


def concept(kind: str, code: str) -> Concept | None:
    """The concept of `kind` with this SNOMED CT code, or None when the value set has no such code."""
    return next((c for c in value_set(kind) if c.code.code == code), None)
