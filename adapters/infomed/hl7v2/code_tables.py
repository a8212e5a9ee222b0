"""HL7 v2 codes → the shared record's codes (ch-term SNOMED CT for the CH EPR).

Configurable: the senders file may carry a `code_tables` object whose entries replace or extend these
(same shape). A code sent that no table maps is an error reported with its value (AE), never a silent
default; what HL7 v2 does not carry at all (facility type, practice setting, language) comes from the
sender's configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from adapters.cara.model import Code
from adapters.cara.vocabulary import FORMAT_CODE_SYSTEM, SNOMED

REPORT_OF_ENCOUNTER = {"code": "371531000", "display": "Report of clinical encounter"}

# TXA-2 (HL7 table 0270, and the values Valais feeders use) → typeCode and classCode.
DOCUMENT_TYPES: dict[str, dict[str, Any]] = {
    "DS": {"type": {"code": "373942005", "display": "Discharge summary"}, "class": REPORT_OF_ENCOUNTER},
    "CN": {"type": {"code": "371530004", "display": "Clinical consultation report"}, "class": REPORT_OF_ENCOUNTER},
    "DI": {"type": {"code": "4201000179104", "display": "Imaging report"},
           "class": {"code": "721981007", "display": "Diagnostic studies report"}},
    "HP": {"type": {"code": "371529009", "display": "History and physical report"}, "class": REPORT_OF_ENCOUNTER},
    "OP": {"type": {"code": "371526002", "display": "Operative report"}, "class": REPORT_OF_ENCOUNTER},
    "PN": {"type": {"code": "371525003", "display": "Clinical procedure report"}, "class": REPORT_OF_ENCOUNTER},
    "LR": {"type": {"code": "4241000179101", "display": "Laboratory report"},
           "class": {"code": "721981007", "display": "Diagnostic studies report"}},
    "RR": {"type": {"code": "4201000179104", "display": "Imaging report"},
           "class": {"code": "721981007", "display": "Diagnostic studies report"}},
}
# ORU^R01 carries results: its embedded report is a laboratory report unless configured otherwise.
ORU_DOCUMENT_TYPE = "LR"

# TXA-18 (HL7 table 0272) → the record's confidentiality level (then raised to the provide level).
CONFIDENTIALITY = {"": "normal", "U": "normal", "R": "restricted", "V": "secret"}
# TXA-17 (table 0271): what may be shared. In progress, dictated, incomplete … are not documents yet.
SHAREABLE_COMPLETION = frozenset({"", "AU", "LA", "DO", "PA"})
# TXA-19 (table 0273): only an available document is shared.
SHAREABLE_AVAILABILITY = frozenset({"", "AV"})

# OBX-5.2 type of data (table 0191) and OBX-5.3 subtype (table 0291) → MIME type parts.
DATA_TYPES = {"AP": "application", "APPLICATION": "application", "TEXT": "text", "IM": "image", "IMAGE": "image",
              "AU": "audio", "AUDIO": "audio", "NS": "application", "SD": "application"}
DATA_SUBTYPES = {"PDF": "pdf", "OCTET-STREAM": "octet-stream", "XML": "xml", "HTML": "html", "RTF": "rtf",
                 "JPEG": "jpeg", "TIFF": "tiff", "PNG": "png", "PLAIN": "plain", "X-HL7-CDA-LEVEL-ONE": "xml"}

UNSTRUCTURED = Code(FORMAT_CODE_SYSTEM, "urn:che:epr:EPR_Unstructured_Document", "Unstructured EPR document")


@dataclass(frozen=True)
class CodeTables:
    document_types: dict[str, dict[str, Any]] = field(default_factory=lambda: dict(DOCUMENT_TYPES))
    oru_document_type: str = ORU_DOCUMENT_TYPE

    @classmethod
    def configured(cls, data: dict[str, Any] | None) -> "CodeTables":
        data = data or {}
        types = {**DOCUMENT_TYPES, **(data.get("document_types") or {})}
        return cls(document_types=types, oru_document_type=data.get("oru_document_type", ORU_DOCUMENT_TYPE))

    def document_type(self, value: str) -> tuple[Code, Code] | None:
        """(typeCode, classCode) for a TXA-2 value, or None when no table maps it."""
        mapped = self.document_types.get(value.upper())
        if mapped is None:
            return None
        return (Code(SNOMED, mapped["type"]["code"], mapped["type"].get("display")),
                Code(SNOMED, mapped["class"]["code"], mapped["class"].get("display")))


def mime_type(data_type: str, subtype: str) -> str | None:
    """`application/pdf` from (application, pdf) or (AP, PDF); None when the pair names no MIME type."""
    major = DATA_TYPES.get(data_type.strip().upper())
    minor = DATA_SUBTYPES.get(subtype.strip().upper())
    if major is None or minor is None:
        return None
    if major == "text" and minor == "plain":
        return "text/plain"
    return f"{major}/{minor}"
