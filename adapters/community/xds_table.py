"""The one table between the record's model and XDS metadata (ITI TF-3 4.2, CH EPR Annex 3), both ways.

What an XDS attribute is called on the wire (classification scheme, external identifier scheme, slot,
association type) and how a model value is written there (code systems as coding schemes, uniqueIds,
relation codes). The ebRIM writer (`adapters/community/ebrim.py`) reads it left to right; the
`*_from_xds` functions are its inverse, which a reader of ebRIM (the XDM reader,
`adapters/infomed/xdm`) can use to read what a community or an export wrote. The tests write a model
through the writer and read it back through the XDM reader with these inverses.

Code systems: FHIR names a code system by URI, XDS by OID. SNOMED CT is one FHIR system but two XDS
coding schemes in the Swiss EPR: codes of the Swiss extension (namespace 1000195, e.g. `1141000195107`
Secret) carry `2.16.756.5.30.1.127.3.4`, every other SNOMED CT code `2.16.840.1.113883.6.96`; the
community refuses a code under a scheme its affinity domain does not list for it. A FHIR system this
table does not know and that is not an `urn:oid:` has no XDS form: the document is refused before
anything is sent (`NoCodingScheme`), never sent under a guessed scheme.
"""

from __future__ import annotations

import re
import uuid

from adapters.cara.identifier_syntax import is_oid
from adapters.cara.model import Code

# -- registry object types and classification schemes (ITI TF-3 Table 4.2.5-1/-2) ------------------
STABLE_DOCUMENT = "urn:uuid:7edca82f-054d-47f2-a032-9b2a5b5186c1"
SUBMISSION_SET_NODE = "urn:uuid:a54d6aa5-d40d-43f9-88c5-b4633d873bdd"

DOCUMENT_AUTHOR = "urn:uuid:93606bcf-9494-43ec-9b4e-a7748d1a838d"
CLASS_CODE = "urn:uuid:41a5887f-8865-4c09-adf7-e362475b143a"
CONFIDENTIALITY_CODE = "urn:uuid:f4f85eac-e6cb-4883-b524-f2705394840f"
EVENT_CODE = "urn:uuid:2c6b8cb7-8b2a-4051-b291-b1ae6a575ef4"
FORMAT_CODE = "urn:uuid:a09d5840-386c-46f2-b5ad-9c3699a4309d"
FACILITY_TYPE_CODE = "urn:uuid:f33fb8ac-18af-42cc-ae0e-ed0b0bdb91e1"
PRACTICE_SETTING_CODE = "urn:uuid:cccf5598-8b07-4b77-a05e-ae952c785ead"
TYPE_CODE = "urn:uuid:f0306f51-975f-434e-a61c-c59651d33983"
DOCUMENT_PATIENT_ID = "urn:uuid:58a6f841-87b3-4a3e-92fd-a8ffeff98427"
DOCUMENT_UNIQUE_ID = "urn:uuid:2e82c1f6-a085-4c72-9da3-8640a32e42ab"

SUBMISSION_AUTHOR = "urn:uuid:a7058bb9-b4e4-4307-ba5b-e3f0ab85e12d"
CONTENT_TYPE_CODE = "urn:uuid:aa543740-bdda-424e-8c96-df4873be8500"
SUBMISSION_PATIENT_ID = "urn:uuid:6b5aea1a-874d-4603-a4bc-96a0a7b38446"
SUBMISSION_SOURCE_ID = "urn:uuid:554ac39e-e3fe-47fe-b233-965d2a147832"
SUBMISSION_UNIQUE_ID = "urn:uuid:96fdda7c-d067-4183-912e-bf5ee74998a8"

# The coded DocumentEntry attributes: model field → (classification scheme, the name the XDM
# reader's code tables use for it, how many).
DOCUMENT_CODES = {
    "class_codes": (CLASS_CODE, "classCode", "many"),
    "type_code": (TYPE_CODE, "typeCode", "one"),
    "format_code": (FORMAT_CODE, "formatCode", "one"),
    "confidentiality": (CONFIDENTIALITY_CODE, "confidentialityCode", "many"),
    "facility_type": (FACILITY_TYPE_CODE, "healthcareFacilityTypeCode", "one"),
    "practice_setting": (PRACTICE_SETTING_CODE, "practiceSettingCode", "one"),
    "event_codes": (EVENT_CODE, "eventCodeList", "many"),
}
EXTERNAL_ID_NAMES = {
    DOCUMENT_PATIENT_ID: "XDSDocumentEntry.patientId",
    DOCUMENT_UNIQUE_ID: "XDSDocumentEntry.uniqueId",
    SUBMISSION_PATIENT_ID: "XDSSubmissionSet.patientId",
    SUBMISSION_UNIQUE_ID: "XDSSubmissionSet.uniqueId",
    SUBMISSION_SOURCE_ID: "XDSSubmissionSet.sourceId",
}

# -- slots ----------------------------------------------------------------------------------------
ORIGINAL_PROVIDER_ROLE_SLOT = "urn:e-health-suisse:2020:originalProviderRole"
DELETION_STATUS_SLOT = "urn:e-health-suisse:2019:deletionStatus"

# -- associations ---------------------------------------------------------------------------------
HAS_MEMBER = "urn:oasis:names:tc:ebxml-regrep:AssociationType:HasMember"
ASSOCIATION_TYPES = {  # DocumentReference.relatesTo.code → XDS association type
    "replaces": "urn:ihe:iti:2007:AssociationType:RPLC",
    "appends": "urn:ihe:iti:2007:AssociationType:APND",
    "transforms": "urn:ihe:iti:2007:AssociationType:XFRM",
    "signs": "urn:ihe:iti:2007:AssociationType:signs",
}
RELATION_CODES = {value: key for key, value in ASSOCIATION_TYPES.items()}

# -- identifier domains ---------------------------------------------------------------------------
SPID_OID = "2.16.756.5.30.1.127.3.10.3"
GLN_OID = "2.51.1.3"
ROLE_OID = "2.16.756.5.30.1.127.3.10.6"

# -- code systems ---------------------------------------------------------------------------------
SNOMED_SYSTEM = "http://snomed.info/sct"
SNOMED_OID = "2.16.840.1.113883.6.96"
SNOMED_SWISS_EXTENSION_OID = "2.16.756.5.30.1.127.3.4"
# SCTID = item id, namespace (7 digits), partition "10" (an extension concept), check digit.
_SWISS_EXTENSION_CONCEPT = re.compile(r"[0-9]{1,8}100019510[0-9]")
CODING_SCHEMES = {  # FHIR system URI → XDS codingScheme OID (SNOMED CT: see coding_scheme)
    "http://loinc.org": "2.16.840.1.113883.6.1",
    "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode": "1.3.6.1.4.1.19376.1.2.3",
    "http://terminology.hl7.org/CodeSystem/v3-Confidentiality": "2.16.840.1.113883.5.25",
    "http://dicom.nema.org/resources/ontology/DCM": "1.2.840.10008.2.16.4",
}
CODING_SYSTEMS = {oid: system for system, oid in CODING_SCHEMES.items()}
CODING_SYSTEMS.update({SNOMED_OID: SNOMED_SYSTEM, SNOMED_SWISS_EXTENSION_OID: SNOMED_SYSTEM})


class NoCodingScheme(ValueError):
    """A code whose system has no XDS coding scheme (the document cannot be sent as it is)."""


def is_swiss_extension(code: str) -> bool:
    return _SWISS_EXTENSION_CONCEPT.fullmatch(code) is not None


def coding_scheme(code: Code) -> str:
    """The XDS codingScheme of a model code."""
    system = code.system or ""
    if system == SNOMED_SYSTEM:
        return SNOMED_SWISS_EXTENSION_OID if is_swiss_extension(code.code) else SNOMED_OID
    if system in CODING_SCHEMES:
        return CODING_SCHEMES[system]
    oid = system.removeprefix("urn:oid:")
    if system.startswith("urn:oid:") and is_oid(oid):
        return oid
    raise NoCodingScheme(f"code {code.code!r} of system {system or '(none)'!r} has no XDS coding scheme")


def code_from_xds(coding_scheme_oid: str | None, code: str, display: str | None = None) -> Code:
    """The inverse of `coding_scheme`: an XDS (codingScheme, code) as a model code."""
    scheme = coding_scheme_oid or ""
    system = CODING_SYSTEMS.get(scheme) or (f"urn:oid:{scheme}" if is_oid(scheme) else scheme or None)
    return Code(system, code, display)


# -- uniqueIds --------------------------------------------------------------------------------------
def document_unique_id(unique_id: str) -> str:
    """masterIdentifier (urn:oid:… / urn:uuid:…) → XDSDocumentEntry.uniqueId (the bare OID or UUID,
    as the community's kit and the Mobile Access Gateway write it)."""
    for prefix in ("urn:oid:", "urn:uuid:"):
        if unique_id.startswith(prefix):
            return unique_id[len(prefix):]
    return unique_id


def unique_id_from_xds(value: str) -> str:
    """The inverse of `document_unique_id`."""
    if is_oid(value):
        return f"urn:oid:{value}"
    try:
        return f"urn:uuid:{uuid.UUID(value)}" if len(value) == 36 else value
    except ValueError:
        return value


def submission_set_unique_id(unique_id: str) -> str:
    """XDSSubmissionSet.uniqueId must be an OID: urn:oid:X → X; a UUID → its OID 2.25.<integer>
    (ITU-T X.667), so the same submission keeps the same uniqueId on every attempt."""
    bare = unique_id.removeprefix("urn:oid:")
    if is_oid(bare):
        return bare
    return f"2.25.{uuid.UUID(unique_id.removeprefix('urn:uuid:')).int}"


def oid_of_system(system: str | None) -> str | None:
    """`urn:oid:X` → X (an identifier domain as a CX assigning authority), else None."""
    if system and system.startswith("urn:oid:") and is_oid(system[8:]):
        return system[8:]
    return None
