"""Checks a resource against the differential of a CH StructureDefinition, mechanically: every element's
cardinality (min/max, per parent instance), fixed and pattern values, and slices (discriminated by value,
`$this` or a child path; closed slicing admits no other member).

The profile is the vendored differential (ig/differential) merged with its CH parents' along the
`baseDefinition` chain, a child overriding its parent per element id and per property (a differential states
only what it changes). The chain stops at the first parent outside CH EPR FHIR: IHE BALP, MHD, PIXm and PDQm
(`https://profiles.ihe.net/…`) and the core AuditEvent are not vendored, so what only they require (their
slicing, the client/server agent types, the patient entity's codes, `type` and the restful-interaction
subtype of the BALP profiles) is not checked here; the tests that need it assert it directly.

A slice a CH profile constrains but whose slicing a non-CH parent defines (e.g. `agent:mainUser`, sliced in
BALP) has no discriminator here: its members are recognised by the fixed and pattern values the CH
differential gives the slice itself or its direct children (`mainUser.type` = RESP, `traceparent.type`/`role`),
or, where CH gives none, by the values its non-CH parent gives them as written out in `PARENT_SLICE_VALUES`
(a few elements of the published IHE profile, merged in as that parent's differential); a slice without any
such value (`agent:client`, `entity:patient` in the BALP-derived profiles) cannot be told apart and is left
unchecked, with everything under it (`unchecked_slices` lists them).

Required `binding`s are checked against the value sets vendored in ig/valueset (EprParticipant, the CH:ATC
participant roles), and a value discriminator with no fixed value uses such a binding as FHIR does (the
PolicyAuditEvent `Resource` slice holds the entities whose role is an EPR participant). Bindings to value sets
not vendored (ch-term's EprPurposeOfUse and confidentiality codes, extensible ones) are not checked: there is
no terminology service here. Not evaluated either: FHIRPath `constraint`s (no FHIRPath engine; each one the
vendored profiles state is written out in test_ch_epr_audit_profiles.INVARIANTS); no type slicing, no profile
discriminators. Enough of FHIR profiling for the CH EPR audit profiles, not a general validator.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

IG = Path(__file__).parent / "ig"
CH_PROFILES = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/"


def _value_sets() -> dict[str, set[tuple[str, str]]]:
    """url -> the (system, code) pairs of each vendored value set (compose.include concepts only)."""
    sets = {}
    for path in (IG / "valueset").glob("ValueSet-*.json"):
        value_set = json.loads(path.read_text())
        sets[value_set["url"]] = {(include["system"], concept["code"]) for include in value_set["compose"]["include"]
                                  for concept in include["concept"]}
    return sets


VALUE_SETS = _value_sets()

OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
# What a non-CH parent (not vendored) says a slice's members carry, where a CH profile constrains the slice
# (e.g. `entity:data.what.reference` 1..1) but gives it no value it could be recognised by: the elements of the
# published parent that recognise the slice, written out by hand, keyed by the parent's url.
PARENT_SLICE_VALUES: dict[str, list[dict[str, Any]]] = {
    # IHE MHD 4.2.3 (https://profiles.ihe.net/ITI/MHD/4.2.3/), the parent of ChAuditEventIti68Responder: the
    # document retrieved is the entity whose role is Report.
    "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.RetrieveDocument.Audit.Responder": [
        {"id": "AuditEvent.entity:data.role", "path": "AuditEvent.entity.role",
         "patternCoding": {"system": OBJECT_ROLE, "code": "3"}},
    ],
}


def _read(name: str) -> dict[str, Any]:
    return json.loads((IG / "differential" / f"StructureDefinition-{name}.json").read_text())


def load_profile(name: str) -> dict[str, Any]:
    """The profile `name` (its id) with its CH parents' differentials merged in; `chain` names them,
    child first, and `unchecked_parent` the first parent outside CH (not checked)."""
    chain = [_read(name)]
    while (base := chain[-1].get("baseDefinition", "")).startswith(CH_PROFILES):
        chain.append(_read(base.removeprefix(CH_PROFILES)))
    merged: dict[str, dict] = {element["id"]: element for element in PARENT_SLICE_VALUES.get(
        chain[-1].get("baseDefinition", ""), [])}
    for profile in reversed(chain):  # parents first: a child's element overrides its parent's, key by key
        for element in profile["differential"]["element"]:
            merged[element["id"]] = {**merged.get(element["id"], {}), **element}
    return {**chain[0], "chain": [p["url"] for p in chain], "unchecked_parent": chain[-1].get("baseDefinition"),
            "differential": {"element": list(merged.values())}}


def check(resource: dict[str, Any], profile: dict[str, Any]) -> list[str]:
    """Every way `resource` breaks the profile's differential (empty: it conforms)."""
    elements = {e["id"]: e for e in profile["differential"]["element"]}
    skipped = set(unchecked_slices(profile))
    problems: list[str] = []
    for element_id, element in elements.items():
        if "." not in element_id or _under(element_id, skipped):
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
            codes = _required_codes(element)
            for value in values if codes is not None else ():
                if not _coded_in(value, codes):
                    problems.append(f"{element_id}: {json.dumps(value)} is not in the required value set "
                                    f"{element['binding']['valueSet']}")
            slicing = element.get("slicing")
            if slicing and slicing.get("rules") == "closed":
                slices = [i for i in elements if i.startswith(f"{element_id}:") and "." not in i[len(element_id):]]
                for value in values:
                    if not any(_in_slice(value, s, elements) for s in slices):
                        problems.append(f"{element_id}: {json.dumps(value)[:120]} is in none of the closed slices")
    return problems


def unchecked_slices(profile: dict[str, Any]) -> list[str]:
    """The slices of `profile` whose members cannot be recognised from the CH differentials alone: sliced by a
    non-CH parent, and given no fixed or pattern value here (see the module docstring)."""
    elements = {e["id"]: e for e in profile["differential"]["element"]}
    return [i for i in elements if _is_slice(i) and "slicing" not in elements.get(i.rpartition(":")[0], {})
            and not _own_values(i, elements)]


def _is_slice(element_id: str) -> bool:
    return ":" in element_id.rpartition(".")[2]


def _under(element_id: str, slices: set[str]) -> bool:
    return any(element_id == s or element_id.startswith(f"{s}.") for s in slices)


def _own_values(slice_id: str, elements: dict) -> dict[str, Any]:
    """Relative path -> fixed/pattern value, for the slice itself ('$this') and its direct children."""
    values = {}
    for element_id, element in elements.items():
        if element_id == slice_id or (element_id.startswith(f"{slice_id}.")
                                      and "." not in element_id[len(slice_id) + 1:]):
            pattern = _pattern(element)
            if pattern is not None:
                values["$this" if element_id == slice_id else element_id[len(slice_id) + 1:]] = pattern
    return values


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
    slicing = elements.get(base_id, {}).get("slicing")
    if slicing is None:  # sliced by a non-CH parent: recognised by the values CH gives the slice
        return all(_matches(value if path == "$this" else _at(value, path), pattern)
                   for path, pattern in _own_values(slice_id, elements).items())
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
            # No fixed value: a required binding to a vendored value set discriminates (on the element, or on
            # the Coding whose `code` the path names).
            coded = path.removesuffix(".code")
            codes = _required_codes(elements.get(f"{slice_id}.{coded}", {}))
            if codes is not None and not _coded_in(_at(value, coded), codes):
                return False
            continue
        target = _at(value, path)
        if target is None or not _matches(target, pattern):
            return False
    return True


def _required_codes(element: dict) -> set[tuple[str, str]] | None:
    binding = element.get("binding", {})
    return VALUE_SETS.get(binding.get("valueSet")) if binding.get("strength") == "required" else None


def _coded_in(value: Any, codes: set[tuple[str, str]]) -> bool:
    """A Coding, or a CodeableConcept with a coding, whose (system, code) is in `codes`."""
    if not isinstance(value, dict):
        return False
    codings = value.get("coding", []) if "coding" in value else [value]
    return any((c.get("system"), c.get("code")) in codes for c in codings if isinstance(c, dict))


def _at(value: Any, path: str) -> Any:
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


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
