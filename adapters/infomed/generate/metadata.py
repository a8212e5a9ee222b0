"""METADATA.XML (ebRIM 3.0 SubmitObjectsRequest) as an Infomed export writes it, from plain values."""

from __future__ import annotations

from xml.sax.saxutils import quoteattr

from adapters.infomed.xdm import ebrim

SNOMED_OID = "2.16.840.1.113883.6.96"
_HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
         f'<lcm:SubmitObjectsRequest xmlns:lcm="{ebrim.LCM}" xmlns:rim="{ebrim.RIM}">\n<rim:RegistryObjectList>\n')
_TAIL = "</rim:RegistryObjectList>\n</lcm:SubmitObjectsRequest>\n"


def _esc(value: str) -> str:
    return value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slot(name: str, *values: str) -> str:
    inner = "".join(f"<rim:Value>{_esc(v)}</rim:Value>" for v in values)
    return f'<rim:Slot name={quoteattr(name)}><rim:ValueList>{inner}</rim:ValueList></rim:Slot>'


def _name(value: str | None) -> str:
    return f"<rim:Name><rim:LocalizedString value={quoteattr(value)}/></rim:Name>" if value else ""


def classification(owner: str, scheme: str, code: str, coding_scheme: str, display: str, n: int) -> str:
    return (f'<rim:Classification id="urn:uuid:cl-{owner[9:]}-{n}" classificationScheme="{scheme}" '
            f'classifiedObject="{owner}" nodeRepresentation={quoteattr(code)}>'
            f"{slot('codingScheme', coding_scheme)}{_name(display)}</rim:Classification>")


def author(owner: str, scheme: str, person: str, role: str, n: int) -> str:
    return (f'<rim:Classification id="urn:uuid:au-{owner[9:]}-{n}" classificationScheme="{scheme}" '
            f'classifiedObject="{owner}" nodeRepresentation="">'
            f"{slot('authorPerson', person)}{slot('authorRole', role)}"
            f"{slot('authorInstitution', 'Hopital du Valais^^^^^^^^^2.16.756.5.30.1.145.7')}</rim:Classification>")


def external_id(owner: str, scheme: str, value: str, name: str, n: int) -> str:
    return (f'<rim:ExternalIdentifier id="urn:uuid:ei-{owner[9:]}-{n}" identificationScheme="{scheme}" '
            f'registryObject="{owner}" value={quoteattr(value)}>{_name(name)}</rim:ExternalIdentifier>')


def extrinsic_object(d: dict) -> str:
    """d: id, mime, title (or None), slots (list of (name, values)), codes (list of (scheme, code,
    codingScheme, display)), author (person, role), unique_id, patient_cx."""
    owner = d["id"]
    parts = [f'<rim:ExtrinsicObject id="{owner}" mimeType={quoteattr(d["mime"])} '
             f'objectType="{ebrim.STABLE_DOCUMENT}" status="urn:oasis:names:tc:ebxml-regrep:StatusType:Approved">']
    parts += [slot(name, *values) for name, values in d["slots"]]
    parts.append(_name(d.get("title")))
    parts += [classification(owner, *c, n) for n, c in enumerate(d["codes"])]
    if d.get("author"):
        parts.append(author(owner, ebrim.DOCUMENT_AUTHOR, *d["author"], 99))
    parts.append(external_id(owner, ebrim.DOCUMENT_PATIENT_ID, d["patient_cx"], "XDSDocumentEntry.patientId", 1))
    parts.append(external_id(owner, ebrim.DOCUMENT_UNIQUE_ID, d["unique_id"], "XDSDocumentEntry.uniqueId", 2))
    parts.append("</rim:ExtrinsicObject>\n")
    return "".join(parts)


def submission_set(set_id: str, unique_id: str, source_id: str, patient_cx: str, time: str) -> str:
    return (f'<rim:RegistryPackage id="{set_id}">{slot("submissionTime", time)}'
            f"{_name('Infomed export')}"
            f"{classification(set_id, ebrim.CONTENT_TYPE_CODE, '71388002', SNOMED_OID, 'Clinical procedure', 0)}"
            f"{external_id(set_id, ebrim.SUBMISSION_UNIQUE_ID, unique_id, 'XDSSubmissionSet.uniqueId', 1)}"
            f"{external_id(set_id, ebrim.SUBMISSION_SOURCE_ID, source_id, 'XDSSubmissionSet.sourceId', 2)}"
            f"{external_id(set_id, ebrim.SUBMISSION_PATIENT_ID, patient_cx, 'XDSSubmissionSet.patientId', 3)}"
            "</rim:RegistryPackage>\n"
            f'<rim:Classification id="urn:uuid:ss-{set_id[9:]}" classifiedObject="{set_id}" '
            f'classificationNode="{ebrim.SUBMISSION_SET_NODE}"/>\n')


def association(n: int, kind: str, source: str, target: str) -> str:
    status = slot("SubmissionSetStatus", "Original") if kind == ebrim.HAS_MEMBER else ""
    return (f'<rim:Association id="urn:uuid:as-{source[9:]}-{n}" associationType="{kind}" '
            f'sourceObject="{source}" targetObject="{target}">{status}</rim:Association>\n')


def document(body: str) -> bytes:
    return (_HEAD + body + _TAIL).encode("utf-8")


ENTITY_BOMB = b"""<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<lcm:SubmitObjectsRequest xmlns:lcm="urn:oasis:names:tc:ebxml-regrep:xsd:lcm:3.0"><x>&lol9;</x></lcm:SubmitObjectsRequest>
"""
