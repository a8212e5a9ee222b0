"""What every face requires of a document's bytes before it is shared, in one place.

ITI-65 (the Binary), HL7 v2 (the OBX-5 ED data) and the XDM migration (the file a URI names) all
call `content_problem`, so one document is refused or accepted alike whichever door it came in by,
with the same words (each face adds where: a FHIRPath, an HL7 field, a source path).
"""

from __future__ import annotations

EMPTY_DOCUMENT = "the document is empty (0 bytes): an empty document is not shared"


def content_problem(content: bytes) -> str | None:
    """Why these bytes cannot be shared as a document, or None."""
    if not content:
        return EMPTY_DOCUMENT
    return None
