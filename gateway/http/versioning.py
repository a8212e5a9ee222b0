"""FHIR versioning at the HTTP face (http://hl7.org/fhir/R4/http.html#versioning): what a stored
resource's `meta.versionId` and `meta.lastUpdated` become in headers, and what the client's
conditional headers ask.

- `ETag: W/"n"` and `Last-Modified` on every read and write of a versioned resource.
- `If-Match` on a write names the version the client read; the use-case stores only if it is still
  the stored one (compare-and-set in the store's UPDATE), else 412 and nothing changed.
- `If-None-Match` on a read answers 304 when the client has that version. The read is still decided
  and audited first: a 304 discloses as much as the 200 would (that the version is current).
- `Prefer: return=minimal | representation | OperationOutcome` on a create or update.
- `Location` of a write names `[type]/{id}/_history/{vid}`.

Searches carry no ETag (not asked, and kept off the ITI-67 hot path).
"""

from __future__ import annotations

import re
from datetime import datetime
from email.utils import format_datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from adapters.cara.errors import InvalidInput, Issue, NotFound
from adapters.cara.identifier_syntax import ascii_int
from gateway.http.outcomes import fhir_response, operation_outcome

__all__ = ["etag", "if_match", "read_response", "write_response", "version_headers", "version_number"]

# W/"3", "3" or a bare 3 (fhirpy's refresh sends the versionId as it is).
_VERSION_TAG = re.compile(r'W/"([0-9]{1,9})"|"([0-9]{1,9})"|([0-9]{1,9})')
_MAX_VERSION = 999_999_999  # an Integer column's worth
RETURN_PREFERENCES = ("minimal", "representation", "OperationOutcome")


def etag(version: int | str) -> str:
    return f'W/"{version}"'


def if_match(request: Request) -> int | None:
    """The version an If-Match names (None when absent or `*`); anything else is a 400."""
    value = request.headers.get("if-match")
    if value is None or value.strip() == "*":
        return None
    match = _VERSION_TAG.fullmatch(value.strip())
    if match is None:
        raise InvalidInput('If-Match must name one version, as the ETag gave it: W/"<versionId>"',
                           location="If-Match")
    return int(_tagged(match))


def version_number(value: str) -> int:
    """A `_history/{vid}` segment: this server's versionIds are 1, 2, …; anything else names no version."""
    number = ascii_int(value)
    if number is None or number > _MAX_VERSION:
        raise NotFound(f"version {value[:20]!r} is not a version of this resource")
    return number


def version_headers(resource: dict[str, Any]) -> dict[str, str]:
    meta = resource.get("meta") or {}
    headers: dict[str, str] = {}
    if meta.get("versionId"):
        headers["ETag"] = etag(meta["versionId"])
    if meta.get("lastUpdated"):
        headers["Last-Modified"] = format_datetime(datetime.fromisoformat(meta["lastUpdated"]), usegmt=True)
    return headers


def read_response(request: Request, resource: dict[str, Any]) -> Response:
    """A read's answer: 304 (no body) when If-None-Match names the version read, else the resource."""
    headers = version_headers(resource)
    version = (resource.get("meta") or {}).get("versionId")
    asked = request.headers.get("if-none-match")
    if asked is not None and version is not None and _names_version(asked, str(version)):
        return Response(status_code=304, headers=headers)
    return fhir_response(resource, 200, headers)


def write_response(request: Request, resource: dict[str, Any], status: int, *, base_url: str) -> Response:
    """A create's or update's answer: Location with the version, ETag, Last-Modified, and the body
    the client's `Prefer: return=` asks for (the resource by default)."""
    headers = version_headers(resource)
    version = (resource.get("meta") or {}).get("versionId")
    location = f"{base_url}/{resource['resourceType']}/{resource['id']}"
    headers["Location"] = f"{location}/_history/{version}" if version else location
    preference = return_preference(request)
    if preference == "minimal":
        return Response(status_code=status, headers=headers)
    if preference == "OperationOutcome":
        stored = f"{resource['resourceType']}/{resource['id']}" + (f" stored as version {version}" if version else " stored")
        return fhir_response(operation_outcome([Issue(stored)], code="informational", severity="information"),
                             status, headers)
    return fhir_response(resource, status, headers)


def return_preference(request: Request) -> str:
    for value in request.headers.getlist("prefer"):
        for part in value.split(";"):
            name, _, chosen = part.strip().partition("=")
            if name.strip().lower() == "return" and chosen.strip().strip('"') in RETURN_PREFERENCES:
                return chosen.strip().strip('"')
    return "representation"


def _names_version(header: str, version: str) -> bool:
    for tag in header.split(","):
        tag = tag.strip()
        if tag == "*":
            return True
        match = _VERSION_TAG.fullmatch(tag)
        if match is not None and _tagged(match) == version:
            return True
    return False


def _tagged(match: re.Match[str]) -> str:
    return next(group for group in match.groups() if group is not None)
