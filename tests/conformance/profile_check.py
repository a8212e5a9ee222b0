"""Checks a resource against the differential of a StructureDefinition, mechanically: every element's
cardinality (min/max, per parent instance), fixed and pattern values, and slices (discriminated by value,
`$this` or a child path; closed slicing admits no other member). FHIRPath constraints (`constraint`) are
not evaluated here; the tests that need one assert it directly.

Enough of FHIR profiling for the CH EPR audit profiles, not a general validator: no type slicing, no
profile discriminators, no bindings.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IG = Path(__file__).parent / "ig"


def load_profile(name: str) -> dict[str, Any]:
    return json.loads((IG / "differential" / f"StructureDefinition-{name}.json").read_text())


def check(resource: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Every way `resource` breaks the profile's differential (empty: it conforms)."""
    elements = {e["id"]: e for e in profile["differential"]["element"]}
    problems: list[str] = []
    for element_id, element in elements.items():
        if "." not in element_id:
            continue
        parent_id, _, last = element_id.rpartition(".")
        for parent in _instances(resource, parent_id, elements):
            values = _children(parent, last, f"{parent_id}.{last}", elements)
            low, high = element.get("min", 0), element.get("max", "*")
            if len(values) < low or (high != "*" and len(values) > int(high)):
                problems.append(f"{element_id}: {len(values)} found, cardinality {low}..{high}")
            for key in element:
                if key.startswith(("pattern", "fixed")):
                    for value in values:
                        ok = _matches(value, element[key]) if key.startswith("pattern") else value == element[key]
                        if not ok:
                            problems.append(f"{element_id}: {json.dumps(value)} does not match {key} "
                                            f"{json.dumps(element[key])}")
            slicing = element.get("slicing")
            if slicing and slicing.get("rules") == "closed":
                slices = [i for i in elements if i.startswith(f"{element_id}:") and "." not in i[len(element_id):]]
                for value in values:
                    if not any(_in_slice(value, s, elements) for s in slices):
                        problems.append(f"{element_id}: {json.dumps(value)[:120]} is in none of the closed slices")
    return problems


def _instances(resource: dict[str, Any], element_id: str, elements: dict) -> list[Any]:
    segments = element_id.split(".")
    found = [resource]
    for depth in range(1, len(segments)):
        prefix = ".".join(segments[:depth])
        found = [v for parent in found for v in _children(parent, segments[depth], f"{prefix}.{segments[depth]}",
                                                          elements)]
    return found


def _children(parent: Any, segment: str, element_id: str, elements: dict) -> list[Any]:
    name, _, slice_name = segment.partition(":")
    if not isinstance(parent, dict):
        return []
    value = parent.get(name)
    if name.endswith("[x]"):
        value = next((v for k, v in parent.items() if k.startswith(name[:-3])), None)
    values = [] if value is None else value if isinstance(value, list) else [value]
    if slice_name:
        values = [v for v in values if _in_slice(v, element_id, elements)]
    return values


def _in_slice(value: Any, slice_id: str, elements: dict) -> bool:
    base_id = slice_id.rpartition(":")[0]
    slicing = elements[base_id]["slicing"]
    for discriminator in slicing["discriminator"]:
        path = discriminator["path"]
        if path == "$this":
            pattern = _pattern(elements[slice_id])
            if pattern is not None and not _matches(value, pattern):
                return False
            continue
        child = elements.get(f"{slice_id}.{path}")
        pattern = _pattern(child) if child else None
        if pattern is None:
            continue
        target = value
        for part in path.split("."):
            target = target.get(part) if isinstance(target, dict) else None
        if target is None or not _matches(target, pattern):
            return False
    return True


def _pattern(element: dict) -> Any:
    return next((v for k, v in element.items() if k.startswith(("pattern", "fixed"))), None)


def _matches(value: Any, pattern: Any) -> bool:
    """FHIR pattern semantics: every property of the pattern is present with that value; in a list,
    each pattern item is matched by some item of the value."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(_matches(value.get(k), v) for k, v in pattern.items())
    if isinstance(pattern, list):
        return isinstance(value, list) and all(any(_matches(v, p) for v in value) for p in pattern)
    return value == pattern
