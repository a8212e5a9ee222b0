"""The codes and profiles of the gateway's audit events: transactions and their event types, the CH
profiles each record claims, the CH:ATC event types, the systems they are coded in. Read by the one
mapping (`audit/events.py`) and by the tests that hold its records to the profiles."""

from __future__ import annotations

from adapters.cara.vocabulary import GLN_SYSTEM, SPID_SYSTEM

DCM = "http://dicom.nema.org/resources/ontology/DCM"
ATC_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.7"
GROUP_ROLE_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.14"
IHE_EVENT_TYPE_SYSTEM = "urn:ihe:event-type-code"
EHS_EVENT_TYPE_SYSTEM = "urn:e-health-suisse:event-type-code"  # PPQ transactions (CH EPR FHIR)
TRANSACTION_SYSTEMS = (IHE_EVENT_TYPE_SYSTEM, EHS_EVENT_TYPE_SYSTEM)
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
XDS_UNIQUE_ID = "urn:ihe:iti:xds:2013:uniqueId"
JTI_PREFIX = "urn:ietf:params:oauth:jti:"
QUALIFIER_SYSTEMS = {"urn:gs1:gln": GLN_SYSTEM, "urn:e-health-suisse:2015:epr-spid": SPID_SYSTEM}
PURPOSE_DISPLAY = {"NORM": "Normal Access", "EMER": "Emergency Access", "AUTO": "Automatic Upload",
                   "DICOM_AUTO": "DICOM Automatic Upload"}
OUTCOMES = ("0", "4", "8", "12")  # success, minor (refused/bad request), serious, major failure
ACTIONS = ("C", "R", "U", "D", "E")

# IHE/CH transaction -> (system, display, event type code in DCM). The type is the transaction's own
# (the gateway is the responder/recipient); the ATC view replaces it with 110106.
TRANSACTIONS = {
    "ITI-65": (IHE_EVENT_TYPE_SYSTEM, "Provide Document Bundle", ("110107", "Import")),
    "ITI-66": (IHE_EVENT_TYPE_SYSTEM, "Find Document Lists", ("110112", "Query")),
    "ITI-67": (IHE_EVENT_TYPE_SYSTEM, "Find Document References", ("110112", "Query")),
    "ITI-68": (IHE_EVENT_TYPE_SYSTEM, "Retrieve Document", ("110106", "Export")),
    "ITI-78": (IHE_EVENT_TYPE_SYSTEM, "Mobile Patient Demographics Query", ("110112", "Query")),
    "ITI-81": (IHE_EVENT_TYPE_SYSTEM, "Retrieve ATNA Audit Event", ("110112", "Query")),
    "ITI-83": (IHE_EVENT_TYPE_SYSTEM, "Mobile Patient Identifier Cross-reference Query", ("110112", "Query")),
    "ITI-104": (IHE_EVENT_TYPE_SYSTEM, "Patient Identity Feed FHIR", ("110110", "Patient Record")),
    "ITI-119": (IHE_EVENT_TYPE_SYSTEM, "Patient Demographics Match", ("110112", "Query")),
    # CH:MHD-1 is coded CH-MHD-1 in the e-health-suisse system (ChAuditEventChMhd1ResponderExample).
    "CH-MHD-1": (EHS_EVENT_TYPE_SYSTEM, "Update Document Metadata", ("110107", "Import")),
    "PPQ-3": (EHS_EVENT_TYPE_SYSTEM, "Mobile Privacy Policy Feed", ("110110", "Patient Record")),
    "PPQ-4": (EHS_EVENT_TYPE_SYSTEM, "Mobile Privacy Policy Bundle Feed", ("110110", "Patient Record")),
    "PPQ-5": (EHS_EVENT_TYPE_SYSTEM, "Mobile Privacy Policy Retrieve", ("110112", "Query")),
}
OTHER_TYPE = ("110100", "Application Activity")
# The CH profile each transaction's record claims (meta.profile) and is tested against
# (tests/conformance/ig/differential). Transactions not listed claim none yet.
CH_PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/"
TRANSACTION_PROFILES = {
    "CH-MHD-1": CH_PROFILE + "ch-mhd-updatedocumentmetadata-audit-responder",
}
# Claimed by the records of successful exchanges only (a refused one may lack what the profile requires).
SUCCESS_PROFILES = {
    "ITI-65": CH_PROFILE + "ChAuditEventIti65Recipient",  # DCM 110107 Import, as its IHE parent (not REST)
}
# RESTful transactions (IHE BALP, the CH profiles' parents): `type` rest, the restful-interaction beside the
# transaction code in `subtype`, and the CH profile per interaction (the IG's examples show each shape).
REST_TYPE = {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
             "display": "Restful Operation"}
RESTFUL_INTERACTION = "http://hl7.org/fhir/restful-interaction"
INTERACTION_BY_ACTION = {"C": "create", "R": "read", "U": "update", "D": "delete"}
REST_PROFILES = {
    # No CH profile for ITI-66 (CH EPR FHIR 5.0.0 does not profile it): the IHE MHD one, whose shape the
    # IHE example gives (tests/conformance/ig/audit-event-shapes.json).
    ("ITI-66", "search"): "https://profiles.ihe.net/ITI/MHD/StructureDefinition/IHE.MHD.FindDocumentLists.Audit.Responder",
    ("ITI-66", "read"): None,  # reading one SubmissionSet List: no profile of its own
    ("ITI-67", "search"): CH_PROFILE + "ChAuditEventIti67Responder",
    ("ITI-67", "read"): None,  # reading one DocumentReference: no CH profile of its own
    ("ITI-68", "read"): CH_PROFILE + "ChAuditEventIti68Responder",
    ("ITI-83", "search"): CH_PROFILE + "ChAuditEventIti83Manager",
    ("ITI-119", "search"): CH_PROFILE + "ChAuditEventIti119Supplier",
    ("ITI-104", "create"): CH_PROFILE + "ChAuditEventIti104ManagerCreate",
    ("ITI-104", "update"): CH_PROFILE + "ChAuditEventIti104ManagerUpdate",
    ("PPQ-3", "create"): CH_PROFILE + "ChAuditEventPpq3Create",
    ("PPQ-3", "update"): CH_PROFILE + "ChAuditEventPpq3Update",
    ("PPQ-3", "delete"): CH_PROFILE + "ChAuditEventPpq3Delete",
    ("PPQ-5", "search"): CH_PROFILE + "ChAuditEventPpq5Repository",
}
PROVENANCE_PARTICIPANT = "http://terminology.hl7.org/CodeSystem/provenance-participant-type"

# CH:ATC event types (urn:oid:2.16.756.5.30.1.127.3.10.7) -> (display, action the examples use).
ATC_EVENT_TYPES = {
    "ATC_DOC_CREATE": ("Document upload", "C"),
    "ATC_DOC_READ": ("Document retrieval", "R"),
    "ATC_DOC_UPDATE": ("Document or Document Metadata update", "U"),
    "ATC_DOC_DELETE": ("Document removal", "D"),
    "ATC_DOC_SEARCH": ("Document search", "E"),
    "ATC_POL_CREATE_AUT_PART_AL": ("Authorize participants to access level/date", "C"),
    "ATC_POL_UPDATE_AUT_PART_AL": ("Update access level/date of authorized participants", "U"),
    "ATC_POL_REMOVE_AUT_PART_AL": ("Remove authorization for participants to access level/date", "D"),
    "ATC_POL_DEF_CONFLEVEL": ("Set or update the default Confidentiality Level for new documents", "U"),
    "ATC_POL_DIS_EMER_USE": ("Disabling Emergency Access", "U"),
    "ATC_POL_ENA_EMER_USE": ("Enabling Emergency Access", "U"),
    "ATC_POL_INCL_BLACKLIST": ("Assign a Healthcare Professional to Blacklist", "C"),
    "ATC_POL_EXL_BLACKLIST": ("Exclude a Healthcare Professional from Blacklist", "D"),
    "ATC_LOG_READ": ("Accessing the Patient Audit Record Repository", "C"),  # "C" as in the official example
    "ATC_HPD_GROUP_ENTRY_NOTIFY": ("Entry of healthcare professionals into a group", "E"),
}
ATC_PROFILES = {
    "ATC_DOC": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/DocumentAuditEvent",
    "ATC_POL": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/PolicyAuditEvent",
    "ATC_LOG": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/AccessAuditTrailEvent",
    "ATC_HPD": "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/HpdAuditEvent",
}
