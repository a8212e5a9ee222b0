"""How ITI-68 serves a document's bytes so that no browser renders it as part of the gateway.

A stored document is whatever a submitter uploaded: an HTML or SVG page served inline from the
gateway's origin would run its scripts with that origin (the patient's session, other documents).
So the answer is inline only for an explicit list of passive types a browser shows without running
anything (PDF, raster images, plain text, with `nosniff`); every other type — HTML, XHTML, SVG, XML,
JavaScript, anything unknown — is `Content-Disposition: attachment` and carries a CSP sandbox with
no sources, so even a browser that ignores the disposition renders it script-less in an opaque
origin. The bytes are never changed: the type decides headers only.

A client that asks for FHIR JSON (`Accept: application/fhir+json`, or `_format=json`, as fhirpy's and
fhirclient's `read()` do) gets the document as a FHIR Binary resource instead (contentType, base64
data, securityContext naming its DocumentReference): JSON is never rendered as the document, so the
attachment rules above are not needed for it. `Accept: application/json` alone still gets the bytes:
a stored JSON document asked for as itself must not turn into a resource.
"""

from __future__ import annotations

import base64
from typing import Any

from starlette.requests import Request

from adapters.cara.identifier_syntax import is_media_type

# Deny by default: types shown inline are listed, everything else is downloaded.
INLINE_TYPES = frozenset({"application/pdf", "image/png", "image/jpeg", "image/gif", "text/plain"})
SANDBOX_CSP = "sandbox; default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"


def retrieve_headers(content_type: str, *, entry_id: str) -> tuple[str, dict[str, str]]:
    """(media type to send, headers) for one document. A stored type that is not a MIME type
    (written before contentType was checked) is sent as application/octet-stream."""
    media_type = content_type if is_media_type(content_type) else "application/octet-stream"
    essence = media_type.split(";", 1)[0].strip().lower()
    headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
    if essence not in INLINE_TYPES:
        filename = "".join(c for c in entry_id if c.isascii() and (c.isalnum() or c in "-_")) or "document"
        headers["Content-Disposition"] = f'attachment; filename="{filename}"'
        headers["Content-Security-Policy"] = SANDBOX_CSP
    return media_type, headers


FHIR_JSON_TYPES = frozenset({"application/fhir+json", "application/json+fhir"})
BINARY_RESOURCE_HEADERS = {"Cache-Control": "no-store"}


def wants_binary_resource(request: Request) -> bool:
    """FHIR JSON asked for: `_format` (taken out of the query by rest_conventions, which leaves it in
    the scope) or an Accept naming a FHIR JSON type with a non-zero quality."""
    if request.scope.get("fhir_format") is not None:
        return True
    for part in request.headers.get("accept", "").split(","):
        media_type, *parameters = (p.strip().lower() for p in part.split(";"))
        if media_type in FHIR_JSON_TYPES and not any(p.replace(" ", "") in ("q=0", "q=0.0", "q=0.00", "q=0.000")
                                                     for p in parameters):
            return True
    return False


def binary_resource(retrieved, *, entry_id: str) -> dict[str, Any]:
    """The retrieved document as a FHIR Binary (R4: contentType, securityContext, data)."""
    content_type = retrieved.content_type if is_media_type(retrieved.content_type) else "application/octet-stream"
    return {"resourceType": "Binary", "id": entry_id, "contentType": content_type,
            "securityContext": {"reference": f"DocumentReference/{entry_id}"},
            "data": base64.b64encode(retrieved.content).decode("ascii")}
