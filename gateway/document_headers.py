"""How ITI-68 serves a document's bytes so that no browser renders it as part of the gateway.

A stored document is whatever a submitter uploaded: an HTML or SVG page served inline from the
gateway's origin would run its scripts with that origin (the patient's session, other documents).
So the answer is inline only for an explicit list of passive types a browser shows without running
anything (PDF, raster images, plain text, with `nosniff`); every other type — HTML, XHTML, SVG, XML,
JavaScript, anything unknown — is `Content-Disposition: attachment` and carries a CSP sandbox with
no sources, so even a browser that ignores the disposition renders it script-less in an opaque
origin. The bytes are never changed: the type decides headers only.
"""

from __future__ import annotations

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
