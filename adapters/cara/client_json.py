"""JSON from clients, read under a budget and without duplicate members.

Checked while the body is parsed, before any resource is validated or stored: a member named twice
in one object (two `subject` in a List: one parser keeps the last, a reviewer reads the first),
nesting deeper than any FHIR resource we accept, too many members, and more *metadata* than the
budget. Metadata is everything but the values of `data` members (a Binary's base64, bounded by the
body size limit), so a Bundle carrying a 50 MB document passes while one whose DocumentReference
has 200,000 extensions is refused at its 20,000th member, before the parse is over and long before
FHIR validation would spend seconds on it.

The first pass is the standard library's C parser with an `object_pairs_hook` (it sees each object's
members in order, duplicates included; several times cheaper than a token scan in Python). Only when that pass
finds a problem does `_scan`, a byte-level walk, run to name the problem's FHIRPath. orjson then
parses the body for use, so what is used is what orjson reads (UTF-8 only, no NaN, no lone surrogates).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

import orjson

from adapters.cara.errors import InvalidInput, ProfileViolation, TooLarge

__all__ = ["JsonLimits", "DEFAULT_LIMITS", "load_client_json", "check_resource_sizes"]

# Where a string starts, or a structural character.
_STRUCTURE = re.compile(rb'["{}\[\]:,]')
_BINARY_MEMBER = "data"


@dataclass(frozen=True)
class JsonLimits:
    """`EPR_MAX_METADATA_BYTES`, `EPR_MAX_JSON_DEPTH`, `EPR_MAX_RESOURCE_METADATA_BYTES`,
    `EPR_MAX_JSON_MEMBERS`."""

    max_metadata_bytes: int = 1024 * 1024  # one request's JSON, `data` values aside
    max_depth: int = 32  # a CH MHD Bundle nests about 12 deep
    max_resource_bytes: int = 64 * 1024  # one resource of a Bundle (a DocumentReference is ~3 KB)
    max_members: int = 20_000  # object members in one request (a DocumentReference has ~150)


DEFAULT_LIMITS = JsonLimits()


class _Container:
    __slots__ = ("keys", "index", "key", "after_colon")

    def __init__(self, is_object: bool):
        self.keys: set[str] | None = set() if is_object else None
        self.index = 0
        self.key: str | None = None
        self.after_colon = False


class _Refused(Exception):
    """Raised inside the parser's hook to stop it. A duplicate or a depth is then located by `_scan`;
    a budget is reported at once (locating it would cost the attacker's request more CPU)."""

    def __init__(self, budget: str | None = None):
        super().__init__(budget)
        self.budget = budget


def load_client_json(raw: bytes, *, root: str, limits: JsonLimits = DEFAULT_LIMITS) -> Any:
    """Check `raw` (see the module's docstring), then parse it. `root` names the top of FHIRPaths."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"the body is not UTF-8 JSON (byte {exc.start})") from None
    try:
        _check(text, len(raw), limits)
    except _Refused as refused:
        if refused.budget:
            raise TooLarge(refused.budget, location=root) from None
        _scan(raw, root, limits)  # raises with the FHIRPath
        raise InvalidInput("the JSON has a duplicate member or nests too deep", location=root) from None
    except RecursionError:
        _scan(raw, root, limits)
        raise ProfileViolation(f"the JSON nests deeper than {limits.max_depth} levels", location=root) from None
    except ValueError:
        # Not JSON to the standard library: orjson will say where. Should orjson accept what the
        # standard library refused, the byte scan has still applied every check (fail closed).
        _scan(raw, root, limits)
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"the body is not valid JSON ({exc.msg} at position {exc.pos})") from exc


def _check(text: str, size: int, limits: JsonLimits) -> None:
    members = 0
    binary_chars = 0
    depths: dict[int, int] = {}  # id of each object built so far → its nesting depth (all alive until the end)

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal members, binary_chars
        members += len(pairs)
        if members > limits.max_members:
            raise _Refused(f"the JSON has more than {limits.max_members} members (EPR_MAX_JSON_MEMBERS)")
        built = dict(pairs)
        if len(built) != len(pairs):
            raise _Refused
        depth = 1
        for name, value in pairs:
            kind = type(value)
            if kind is dict:
                depth = max(depth, depths[id(value)] + 1)
            elif kind is list:
                depth = max(depth, _list_depth(value, depths) + 1)
            elif kind is str and name == _BINARY_MEMBER:
                binary_chars += len(value)
        if depth > limits.max_depth:
            raise _Refused
        depths[id(built)] = depth
        return built

    value = json.loads(text, object_pairs_hook=hook)
    if type(value) is list and _list_depth(value, depths) > limits.max_depth:
        raise _Refused
    if size - binary_chars > limits.max_metadata_bytes:  # base64 is ASCII: characters are bytes
        raise _Refused(f"the resource's metadata exceeds the budget of {limits.max_metadata_bytes} bytes "
                       "(document content in Binary.data aside; EPR_MAX_METADATA_BYTES)")


def _list_depth(items: list[Any], depths: dict[int, int]) -> int:
    depth = 1
    for item in items:
        kind = type(item)
        if kind is dict:
            depth = max(depth, depths[id(item)] + 1)
        elif kind is list:
            depth = max(depth, _list_depth(item, depths) + 1)
    return depth


def _scan(raw: bytes, root: str, limits: JsonLimits) -> None:
    """The same checks on the raw bytes, naming where the first problem is (run on refusal only)."""
    stack: list[_Container] = []
    binary_bytes = 0  # bytes of `data` values seen so far: not metadata
    members = 0
    position = 0
    search = _STRUCTURE.search
    while (match := search(raw, position)) is not None:
        start = match.start()
        first = raw[start]
        top = stack[-1] if stack else None
        if first == 0x22:  # a string: a member name, or a value
            position = _string_end(raw, start)
            if top is not None and top.keys is not None and not top.after_colon:
                name = _decoded(raw[start:position])
                if name in top.keys:
                    raise InvalidInput(f"member {name!r} appears twice in one JSON object",
                                       location=_path(root, stack, name))
                top.keys.add(name)
                top.key = name
                members += 1
                if members > limits.max_members:
                    raise TooLarge(f"the JSON has more than {limits.max_members} members",
                                   location=_path(root, stack, name))
            elif top is not None and top.after_colon and top.key == _BINARY_MEMBER:
                binary_bytes += position - start
        else:
            position = start + 1
            if first == 0x3A:  # :
                if top is not None:
                    top.after_colon = True
            elif first == 0x2C:  # ,
                if top is not None:
                    top.after_colon = False
                    top.index += 1
            elif first in (0x7B, 0x5B):  # { [
                stack.append(_Container(first == 0x7B))
                if len(stack) > limits.max_depth:
                    raise ProfileViolation(f"the JSON nests deeper than {limits.max_depth} levels",
                                           location=_path(root, stack[:-1], None))
            elif stack:  # } ]
                stack.pop()
        if position - binary_bytes > limits.max_metadata_bytes:
            raise TooLarge(f"the resource's metadata exceeds the budget of {limits.max_metadata_bytes} bytes "
                           f"(document content in Binary.data aside)", location=_path(root, stack, None))


def _string_end(raw: bytes, start: int) -> int:
    """The index after the string opening at `start` (memchr-fast `find`, not a per-byte regex: a
    Binary's base64 is tens of megabytes). An unterminated string ends the scan; orjson reports it."""
    quote = start
    while True:
        quote = raw.find(b'"', quote + 1)
        if quote < 0:
            return len(raw)
        backslashes = 0
        while raw[quote - 1 - backslashes] == 0x5C:
            backslashes += 1
        if backslashes % 2 == 0:
            return quote + 1


def _decoded(token: bytes) -> str:
    if b"\\" not in token:
        return token[1:-1].decode("utf-8", "replace")
    try:  # `"\u0073ubject"` is `subject`: compare names as the parser will see them
        return json.loads(token)
    except ValueError:
        return token[1:-1].decode("utf-8", "replace")  # invalid: orjson refuses the body after the scan


def _path(root: str, stack: list[_Container], last: str | None) -> str:
    """The FHIRPath of the position: member names and array indexes from the root."""
    path = root
    for level, container in enumerate(stack):
        if level == 0:
            continue  # the root object is `root` itself
        parent = stack[level - 1]
        path += f".{parent.key}" if parent.keys is not None else f"[{parent.index}]"
    if last is not None:
        path += f".{last}"
    return path


def check_resource_sizes(data: Any, *, root: str, limits: JsonLimits = DEFAULT_LIMITS) -> None:
    """Each resource of a Bundle (and a lone resource) within `max_resource_bytes` once serialised,
    Binary aside: one oversized entry would make every later search page that lists it as large."""
    if not isinstance(data, dict):
        return
    if data.get("resourceType") == "Bundle":
        entries = data.get("entry") if isinstance(data.get("entry"), list) else []
        resources = [(f"{root}.entry[{i}].resource", e.get("resource")) for i, e in enumerate(entries)
                     if isinstance(e, dict)]
    else:
        resources = [(root, data)]
    for where, resource in resources:
        if not isinstance(resource, dict) or resource.get("resourceType") == "Binary":
            continue
        size = len(orjson.dumps(resource))
        if size > limits.max_resource_bytes:
            raise TooLarge(f"the {resource.get('resourceType', 'resource')} is {size} bytes of metadata, above the "
                           f"budget of {limits.max_resource_bytes} bytes", location=where)
