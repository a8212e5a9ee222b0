"""Systems and codes of the Swiss EPR (CH EPR FHIR 5.0.0, ch-term) used by the record."""

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
GLN_SYSTEM = "urn:oid:2.51.1.3"
RFC3986 = "urn:ietf:rfc:3986"
SNOMED = "http://snomed.info/sct"
ROLE_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.6"
PURPOSE_OF_USE_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.5"
FORMAT_CODE_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.10"

EXT_SOURCE_ID = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-sourceId"
EXT_DESIGNATION_TYPE = "https://profiles.ihe.net/ITI/MHD/StructureDefinition/ihe-designationType"
EXT_AUTHOR_ROLE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-author-authorrole"
EXT_DELETION_STATUS = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-ext-deletionstatus"
SUBMISSION_SET_DESIGNATION = "71388002"
LIST_TYPES_SYSTEM = "https://profiles.ihe.net/ITI/MHD/CodeSystem/MHDlistTypes"

PROFILE_DOCREF = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-documentreference-comprehensive"
PROFILE_SUBMISSIONSET = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-submissionset-comprehensive"

# Confidentiality (SNOMED CT, Swiss extension for secret), least to most restrictive.
CONFIDENTIALITY_CODES = {
    "17621005": "normal",
    "263856008": "restricted",
    "1141000195107": "secret",
}
CONFIDENTIALITY_DISPLAY = {
    "normal": ("17621005", "Normal (qualifier value)"),
    "restricted": ("263856008", "Restricted (qualifier value)"),
    "secret": ("1141000195107", "Secret (qualifier value)"),
}
CONFIDENTIALITY_RANK = {"normal": 0, "restricted": 1, "secret": 2}

ROLES = {
    "PAT": "Patient",
    "HCP": "Healthcare professional",
    "ASS": "Assistant",
    "REP": "Representative",
    "TCU": "Technical user",
    "DADM": "Document administrator",
    "PADM": "Policy administrator",
}

DOCUMENT_STATUSES = ("current", "superseded")
RELATION_CODES = ("replaces", "transforms", "signs", "appends")
