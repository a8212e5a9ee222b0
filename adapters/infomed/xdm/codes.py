"""Versioned code tables: XDS codes from an Infomed export → the shared record's codes.

Why tables in the project rather than pass-through: Infomed carries codes from the old Swiss value
sets next to current ones, and the EPR only knows the current ones. A code that no table maps is a
reported error naming the slot, scheme and value (the document is held until the table is extended),
never a silent default. The built-in table is `code_tables/infomed-v1.json`; operators add later
versions with `--code-table FILE` (same shape; later files win for the same key).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from adapters.cara.model import Code

BUILT_IN = Path(__file__).with_name("code_tables") / "infomed-v1.json"
SLOTS = ("classCode", "typeCode", "formatCode", "confidentialityCode", "healthcareFacilityTypeCode",
         "practiceSettingCode", "eventCodeList")


class CodeTableError(Exception):
    """A code table file that is not of the expected shape."""


@dataclass(frozen=True)
class Unmapped:
    slot: str
    coding_scheme: str | None
    code: str

    def __str__(self) -> str:
        return f"{self.slot} {self.code!r} (codingScheme {self.coding_scheme or 'none'})"


class CodeTables:
    def __init__(self, tables: dict[str, dict[str, Code]], versions: tuple[str, ...]):
        self._tables = tables
        self.versions = versions

    @property
    def version(self) -> str:
        return "+".join(self.versions)

    @classmethod
    def load(cls, extra: list[Path] | tuple[Path, ...] = ()) -> CodeTables:
        tables: dict[str, dict[str, Code]] = {slot: {} for slot in SLOTS}
        versions = []
        for path in (BUILT_IN, *extra):
            try:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
                versions.append(str(data["version"]))
                for slot, entries in data["tables"].items():
                    if slot not in tables:
                        raise CodeTableError(f"{path}: unknown slot {slot!r} (known: {', '.join(SLOTS)})")
                    for key, target in entries.items():
                        tables[slot][key] = Code(target.get("system"), target["code"], target.get("display"))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
                raise CodeTableError(f"{path}: not a code table ({exc})") from exc
        return cls(tables, tuple(versions))

    def map(self, slot: str, coding_scheme: str | None, code: str) -> Code | Unmapped:
        return self._tables[slot].get(f"{coding_scheme or ''}|{code}") or Unmapped(slot, coding_scheme, code)
