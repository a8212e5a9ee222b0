"""Reduces a published CH EPR FHIR StructureDefinition to the form vendored in differential/: the header
(id, url, version, name, type, baseDefinition) and, per differential element, what profile_check.py reads
(path, slicing, sliceName, min, max, pattern[x]/fixed[x], mustSupport) plus the rules it does not evaluate but
keeps in view (constraint, binding). The snapshot, the narrative and the documentation fields are dropped.

    python reduce_profile.py StructureDefinition-ChAuditEventIti67Responder.json > differential/…json

The input may be the IG's `StructureDefinition-<id>.json` or its page `StructureDefinition-<id>.md`
(whose "Resource Content" block is the same resource without the snapshot).
"""

from __future__ import annotations

import json
import sys
from typing import Any

HEADER = ("resourceType", "id", "url", "version", "name", "type", "baseDefinition")
ELEMENT = ("id", "path", "sliceName", "slicing", "min", "max")
CONSTRAINT = ("key", "severity", "human", "expression")
BINDING = ("strength", "valueSet")
SLICING = ("discriminator", "rules")


def reduce(definition: dict[str, Any]) -> dict[str, Any]:
    reduced = {k: definition[k] for k in HEADER if k in definition}
    reduced["differential"] = {"element": [_element(e) for e in definition["differential"]["element"]]}
    return reduced


def _element(element: dict[str, Any]) -> dict[str, Any]:
    out = {k: element[k] for k in ELEMENT if k in element}
    if "slicing" in out:
        out["slicing"] = {k: out["slicing"][k] for k in SLICING if k in out["slicing"]}
    out |= {k: v for k, v in element.items() if k.startswith(("pattern", "fixed"))}
    if element.get("mustSupport"):
        out["mustSupport"] = True
    if "constraint" in element:
        out["constraint"] = [{k: c[k] for k in CONSTRAINT if k in c} for c in element["constraint"]]
    if "binding" in element:
        out["binding"] = {k: element["binding"][k] for k in BINDING if k in element["binding"]}
    return out


def parse(text: str) -> dict[str, Any]:
    """A StructureDefinition from its JSON, or from the IG page's ```json block."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    return json.loads(text.split("```json", 1)[1].split("```", 1)[0])


if __name__ == "__main__":
    with open(sys.argv[1], encoding="utf-8") as source:
        print(json.dumps(reduce(parse(source.read())), indent=1, ensure_ascii=False))
