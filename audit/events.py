"""The internal audit record and its one mapping to a FHIR R4 AuditEvent (IHE BALP, CH EPR, CH:ATC).

Why one mapping module: every exchange writes an `AuditRecord` (plain values: who, what, which
patient, which documents, the outcome), and only here does it become FHIR. The stored event is the
full security event: the transaction's own `type`, the IHE transaction code in `subtype`, the
client and server systems as agents, the token id (`agent.policy`, per BALP), the `traceparent`.
When the event is one the patient may see, it also carries the CH:ATC event type (a second
`subtype` coding) and the EPR purpose of use, and `atc_view` derives what ITI-81 returns: CH:ATC
allows exactly one subtype, `type` DCM 110106, and only EPR participants (role required) as agents.

Never put document content or tokens here: documents are named by uniqueId (and, when the caller
gives them, the ATC details), tokens by their `jti`.
"""

from __future__ import annotations

import base64
import copy
import functools
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from urllib.parse import urlencode

import orjson

from adapters.cara.vocabulary import GLN_SYSTEM, PURPOSE_OF_USE_SYSTEM, RFC3986, ROLE_SYSTEM, ROLES, SPID_SYSTEM
from audit.event_codes import (  # the code tables, also read from here by other modules
    DCM,
    ATC_SYSTEM,
    GROUP_ROLE_SYSTEM,
    IHE_EVENT_TYPE_SYSTEM,
    TRANSACTION_SYSTEMS,
    ENTITY_TYPE,
    OBJECT_ROLE,
    PARTICIPATION,
    XDS_UNIQUE_ID,
    JTI_PREFIX,
    QUALIFIER_SYSTEMS,
    PURPOSE_DISPLAY,
    OUTCOMES,
    ACTIONS,
    TRANSACTIONS,
    OTHER_TYPE,
    TRANSACTION_PROFILES,
    SUCCESS_PROFILES,
    REST_TYPE,
    RESTFUL_INTERACTION,
    INTERACTION_BY_ACTION,
    REST_PROFILES,
    PROVENANCE_PARTICIPANT,
    ATC_EVENT_TYPES,
    ATC_PROFILES,
)
from consent.principal import Principal


@dataclass(frozen=True)
class DocumentRef:
    """A document named in an event. The details are what CH:ATC shows the patient (all four are
    required by its DocumentAuditEvent profile); the caller passes them from the entry's metadata."""

    unique_id: str  # masterIdentifier value: urn:oid:… or urn:uuid:…
    repository_unique_id: str | None = None
    home_community_id: str | None = None
    type_code: str | None = None  # SNOMED CT code of DocumentReference.type
    title: str | None = None
    # The resource the exchange named by its URL, for the profiles that require it: the DocumentReference
    # updated (CH:MHD-1), the Binary retrieved (ITI-68). The patient's trail names the document by uniqueId only.
    reference: str | None = None


@dataclass(frozen=True)
class PolicySubject:
    """Whom a policy change (ATC_POL_*) concerns: a professional by GLN, a group by OID, a representative."""

    system: str  # urn:oid:2.51.1.3 for a GLN, urn:ietf:rfc:3986 for a group OID, …
    value: str
    role: str  # HCP, GRP, REP, …
    name: str | None = None
    access_level: str | None = None  # urn:e-health-suisse:2015:policies:access-level:…
    access_limited_to: date | None = None


@dataclass(frozen=True)
class AuditRecord:
    """One exchange, as the use-case layer saw it. `principal` is None only when nobody was
    authenticated (a refused request); `atc_code` set means the patient will see it in their trail."""

    transaction: str  # ITI-65, ITI-67, ITI-68, PPQ-3, … (see TRANSACTIONS)
    principal: Principal | None
    source_site: str  # the audit source OID (settings.audit_source_oid), without urn:oid:
    action: str | None = None  # C R U D E; default: the ATC event type's, else E
    outcome: str = "0"
    outcome_description: str | None = None
    recorded: datetime = field(default_factory=lambda: datetime.now(UTC))
    atc_code: str | None = None
    patient_spid: str | None = None
    patient_name: str | None = None  # the represented patient, shown beside a REP
    documents: tuple[DocumentRef, ...] = ()
    submission_set_unique_id: str | None = None
    query: tuple[tuple[str, str], ...] | None = None  # the search parameters as received
    policy_set_id: str | None = None  # urn:uuid:… of the Consent a PPQ exchange touched
    policy_subject: PolicySubject | None = None
    traceparent: str | None = None
    client_address: str | None = None  # the caller's IP address
    server_address: str | None = None  # the URL the gateway answered on (the responder's network address)
    destination: str | None = None  # the system the gateway sent to, when it is the client (ITI-41: a community)
    source_name: str = "EPR gateway"
    event_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def __post_init__(self) -> None:
        if self.action is not None and self.action not in ACTIONS:
            raise ValueError(f"action must be one of {ACTIONS}")
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}")
        if self.atc_code is not None and self.atc_code not in ATC_EVENT_TYPES:
            raise ValueError(f"unknown CH:ATC event type {self.atc_code!r}")
        if self.recorded.tzinfo is None:
            raise ValueError("recorded must be timezone-aware")
        if not 0 < len(self.transaction) <= 32 or not self.source_site or self.source_site.startswith("urn:"):
            raise ValueError("transaction (at most 32 characters) and source_site (a bare OID) are required")


def split_per_document(record: AuditRecord) -> list[AuditRecord]:
    """CH:ATC names at most one document per event: one record per document (same trace, new ids)."""
    if len(record.documents) <= 1:
        return [record]
    return [replace(record, documents=(document,), event_id=str(uuid.uuid4())) for document in record.documents]


def canonical_json(event: dict) -> str:
    """The form stored and hashed: sorted keys, no spaces, UTF-8 text (no floats occur). orjson writes
    what `json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False)` writes, much faster."""
    return orjson.dumps(event, option=orjson.OPT_SORT_KEYS).decode()


def fhir_instant(moment: datetime) -> str:
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def to_audit_event(record: AuditRecord) -> dict:
    """The full security AuditEvent for `record` (what the ledger stores and exports)."""
    if record.atc_code and record.atc_code.startswith("ATC_DOC") and len(record.documents) > 1:
        raise ValueError("a CH:ATC document event names one document: use split_per_document")
    system, display, (type_code, type_display) = TRANSACTIONS.get(
        record.transaction, (IHE_EVENT_TYPE_SYSTEM, None, OTHER_TYPE))
    if record.destination is not None:  # the gateway sent it (a delivery: ITI-41, or ITI-65 to an MHD recipient)
        type_code, type_display = "110106", "Export"
    subtype = [_coding(system, record.transaction, display)]
    if record.atc_code:
        subtype.insert(0, _coding(ATC_SYSTEM, record.atc_code, ATC_EVENT_TYPES[record.atc_code][0]))
    default_action = ATC_EVENT_TYPES[record.atc_code][1] if record.atc_code else "E"
    event: dict = {
        "resourceType": "AuditEvent",
        "id": record.event_id,
    }
    if record.transaction in TRANSACTION_PROFILES:
        event["meta"] = {"profile": [TRANSACTION_PROFILES[record.transaction]]}
    elif record.transaction in SUCCESS_PROFILES and record.outcome == "0" and record.destination is None:
        event["meta"] = {"profile": [SUCCESS_PROFILES[record.transaction]]}
    interaction = _rest_interaction(record, record.action or default_action)
    if interaction is not None:
        subtype.insert(len(subtype), _coding(RESTFUL_INTERACTION, interaction, interaction))
        profile = REST_PROFILES.get((record.transaction, interaction))
        if profile and record.outcome == "0":
            event["meta"] = {"profile": [profile]}
    event |= {
        "type": dict(REST_TYPE) if interaction is not None else _coding(DCM, type_code, type_display),
        "subtype": subtype,
        "action": record.action or default_action,
        "recorded": fhir_instant(record.recorded),
        "outcome": record.outcome,
    }
    if record.outcome != "0" and record.outcome_description:
        event["outcomeDesc"] = record.outcome_description
    if record.principal is not None:
        event["purposeOfEvent"] = [_purpose_of(record.principal)]
    event["agent"] = _agents(record, interaction)
    event["source"] = {"site": record.source_site,
                       "observer": {"identifier": {"system": RFC3986, "value": f"urn:oid:{record.source_site}"},
                                    "display": record.source_name}}
    entities = _entities(record)
    if entities:
        event["entity"] = entities
    return event


def atc_view(event: dict) -> dict:
    """What CH:ATC (ITI-81) returns for a stored event: one subtype (the ATC code), `type` 110106,
    only agents with an EPR participant role, and the CH:ATC profile claimed in meta."""
    view = copy.deepcopy(event)
    atc = [coding for coding in view.get("subtype", []) if coding.get("system") == ATC_SYSTEM]
    if len(atc) != 1:
        raise ValueError("not a CH:ATC event")
    view["type"] = _coding(DCM, "110106", "Export")
    view["subtype"] = atc
    view["agent"] = [agent for agent in view.get("agent", []) if agent.get("role")]
    # The trail shows each ATC event with its own action (the stored one follows the transaction's
    # profile: a CH:MHD-1 deletion is an update there, a PPQ-3 creation of 202 a create).
    view["action"] = ATC_EVENT_TYPES[atc[0]["code"]][1]
    for entity in view.get("entity", []):
        what = entity.get("what", {})
        if "reference" in what and what.get("identifier", {}).get("system") == XDS_UNIQUE_ID:
            # CH:MHD-1 names the DocumentReference (role Job), ITI-68 the Binary (role Report), by URL; the
            # trail names the document as it always has: its uniqueId, role Report.
            entity["role"] = _coding(OBJECT_ROLE, "3", "Report")
            entity["what"] = {k: v for k, v in what.items() if k != "reference"}
    view["meta"] = {"profile": [ATC_PROFILES[atc[0]["code"][:7]]]}
    return view


def naive_utc(moment: datetime) -> datetime:
    """The store keeps UTC without a zone (house style); refuse naive input, which would be ambiguous."""
    if moment.tzinfo is None:
        raise ValueError("give a timezone-aware datetime")
    return moment.astimezone(UTC).replace(tzinfo=None)


def ledger_columns(event: dict) -> dict:
    """The columns the ledger keeps beside the JSON for its queries, derived from the event itself
    (so `verify_ledger` can tell when a column no longer agrees with the hashed JSON)."""
    codes = {coding.get("system"): coding.get("code") for coding in event.get("subtype", [])}
    transaction = next((codes[s] for s in TRANSACTION_SYSTEMS if s in codes), None)
    recorded = datetime.fromisoformat(event["recorded"].replace("Z", "+00:00"))
    return {
        "recorded_at": naive_utc(recorded),
        "event_type": transaction or event["type"]["code"],
        "subtype": codes.get(ATC_SYSTEM),
        "outcome": event["outcome"],
        "professional": responsible_professional(event),
    }


def responsible_professional(event: dict) -> str | None:
    """The GLN of the professional a person acted for: the main user's own for an HCP, the professional
    an assistant acts for (the primary performer agent); None for every other role (technical users
    included: what they write is the bridge's and the migration's, not a person's access)."""
    agents = event.get("agent", [])
    main = next((a for a in agents if a.get("requestor")), None)
    role = ((main or {}).get("role") or [{}])[0].get("coding", [{}])[0].get("code")
    if role == "HCP":
        return main.get("who", {}).get("identifier", {}).get("value")
    if role == "ASS":
        return next((a.get("who", {}).get("identifier", {}).get("value") for a in agents
                     if a.get("type", {}).get("coding", [{}])[0].get("code") == "PPRF"), None)
    return None


# -- agents ------------------------------------------------------------------------------------
def _rest_interaction(record: AuditRecord, action: str) -> str | None:
    """The FHIR restful interaction a REST transaction's record names, or None (not REST-profiled)."""
    if record.transaction in ("ITI-83", "ITI-119", "PPQ-5"):  # ITI-119 is a search too (its IG example)
        return "search"
    if record.transaction in ("ITI-67", "ITI-66"):
        return "search" if record.query is not None else "read"
    if record.transaction == "ITI-68":
        return "read"
    if record.transaction in ("ITI-104", "PPQ-3"):
        return INTERACTION_BY_ACTION.get(action)
    return None


def _agents(record: AuditRecord, interaction: str | None = None) -> list[dict]:
    agents: list[dict] = []
    principal = record.principal
    if principal is not None:
        if principal.role == "REP" and record.patient_name:
            agents.append({"role": [_cc(ROLE_SYSTEM, "PAT", ROLES["PAT"])], "name": record.patient_name,
                           "requestor": False})
        if principal.acting_for:  # ASS and TCU act for a responsible HCP (CH: the delegation slot)
            agents.append({"type": _cc(PARTICIPATION, "PPRF", "primary performer"),
                           "role": [_cc(ROLE_SYSTEM, "HCP", ROLES["HCP"])],
                           "who": {"identifier": {"system": GLN_SYSTEM, "value": principal.acting_for}},
                           "altId": principal.acting_for,
                           "name": principal.acting_for_name or principal.acting_for, "requestor": False})
        agents.append(_main_user(principal))
        for group in principal.groups:
            agents.append({"role": [_cc(GROUP_ROLE_SYSTEM, "GRP", "Group")], "who": {"identifier": {"value": group.id}},
                           "name": group.name or group.id, "requestor": False})
    client = {"type": _cc(DCM, "110153", "Source Role ID"), "requestor": False}
    client_name = principal.client_id or principal.client_certificate if principal else None
    if client_name:
        client["who"] = {"display": client_name}
    if principal is not None and principal.client_id and principal.client_certificate:
        client["altId"] = principal.client_certificate
    if record.client_address:
        client["network"] = {"address": record.client_address, "type": "2"}
    agents.append(client)
    server = {"type": _cc(DCM, "110152", "Destination Role ID"),
              "who": {"identifier": {"system": RFC3986, "value": f"urn:oid:{record.source_site}"},
                      "display": record.source_name},
              "requestor": False}
    if record.server_address:
        server["network"] = {"address": record.server_address, "type": "5"}  # 5: URI
    agents.append(server)
    if record.transaction == "ITI-68":  # a retrieve: the data flows from the server to the client
        client["type"], server["type"] = _cc(DCM, "110152", "Destination Role ID"), _cc(DCM, "110153", "Source Role ID")
    elif record.destination is not None:  # the gateway is the Document Source, the community's recipient the server
        client["who"] = server["who"]
        server["who"] = {"display": record.destination or "community"}
    elif record.transaction == "PPQ-3" and interaction == "delete":  # ChAuditEventPpq3Delete (BALP delete)
        client["type"] = _cc(DCM, "110150", "Application")
        server["type"] = _cc(PROVENANCE_PARTICIPANT, "custodian", "Custodian")
    return agents


def _main_user(principal: Principal) -> dict:
    agent: dict = {"type": _cc(PARTICIPATION, "RESP", "responsible party"),
                   "role": [_cc(ROLE_SYSTEM, principal.role, ROLES.get(principal.role))]}
    if principal.role != "PAT":  # the patient is the patient entity (as in the CH:ATC examples)
        system = QUALIFIER_SYSTEMS.get(principal.user_id_qualifier or "")
        if system is None and (principal.user_id_qualifier or "").startswith("urn:"):
            system = principal.user_id_qualifier  # e.g. urn:e-health-suisse:representative-id
        agent["who"] = {"identifier": {"system": system, "value": principal.user_id} if system
                        else {"value": principal.user_id}}
    agent["altId"] = principal.user_id
    agent["name"] = principal.name or principal.user_id
    agent["requestor"] = True
    if principal.token_id:
        agent["policy"] = [JTI_PREFIX + principal.token_id]
    agent["purposeOfUse"] = [_purpose_of(principal)]
    return agent


# -- entities ----------------------------------------------------------------------------------
def _entities(record: AuditRecord) -> list[dict]:
    entities: list[dict] = []
    if record.patient_spid:
        entities.append(_entity({"system": SPID_SYSTEM, "value": record.patient_spid}, ("1", "Person"),
                                _coding(OBJECT_ROLE, "1", "Patient")))
    for document in record.documents:
        entity = _entity({"system": XDS_UNIQUE_ID, "value": document.unique_id.removeprefix("urn:oid:")},
                         ("2", "System Object"), _coding(OBJECT_ROLE, "3", "Report"))
        if document.reference:  # the resource by URL, its uniqueId kept beside (the trail shows that one)
            entity["what"] = {"reference": document.reference, **entity["what"]}
            if record.transaction == "CH-MHD-1":  # the DocumentReference changed is the job (the IG's example)
                entity["role"] = _coding(OBJECT_ROLE, "20", "Job")
        details = _details((("Repository Unique Id", document.repository_unique_id),
                            ("homeCommunityID", document.home_community_id),
                            ("EprDocumentTypeCode", document.type_code), ("title", document.title)))
        if details:
            entity["detail"] = details
        entities.append(entity)
    if record.transaction == "ITI-104" and record.patient_spid:  # the Patient resource fed (its data entity)
        entities.append(_entity({"system": SPID_SYSTEM, "value": record.patient_spid}, ("2", "System Object"),
                                _coding(OBJECT_ROLE, "4", "Domain Resource")))
    if record.submission_set_unique_id:
        entities.append(_entity({"system": RFC3986, "value": record.submission_set_unique_id},
                                ("2", "System Object"), _coding(OBJECT_ROLE, "20", "Job")))
    if record.query is not None:
        query_id = uuid.uuid5(uuid.NAMESPACE_URL, f"urn:uuid:{record.event_id}#query")
        entity = _entity({"system": RFC3986, "value": f"urn:uuid:{query_id}"}, ("2", "System Object"),
                         _coding(OBJECT_ROLE, "24", "Query"))
        entity["query"] = _query_value(record.query)
        entities.append(entity)
    if record.policy_set_id:
        entities.append(_entity({"system": RFC3986, "value": record.policy_set_id}, ("2", "System Object"),
                                _coding(OBJECT_ROLE, "4", "Domain Resource")))
    if record.policy_subject is not None:
        entities.append(_policy_subject(record.policy_subject))
    if record.traceparent:
        entities.append(_entity({"value": record.traceparent}, ("4", "Other"),
                                _coding(OBJECT_ROLE, "26", "Processing Element")))
    return entities


def _query_value(query) -> str:
    """The query entity's value: Base64 of the form-encoded parameters. Remembered: practice software
    asks the same few searches again and again, and encoding one cost about as much as the rest of the
    record's entities together."""
    try:
        return _encoded_query(tuple(query))
    except TypeError:  # a parameter that cannot be a key (a list of values): encoded each time
        return _encoded_query.__wrapped__(query)


@functools.lru_cache(maxsize=4096)
def _encoded_query(query) -> str:
    return base64.b64encode(urlencode(query).encode()).decode()


def _policy_subject(subject: PolicySubject) -> dict:
    role_system = GROUP_ROLE_SYSTEM if subject.role == "GRP" else ROLE_SYSTEM
    entity = _entity({"system": subject.system, "value": subject.value}, ("2", "System Object"),
                     _coding(role_system, subject.role, ROLES.get(subject.role, "Group")))
    # PolicyAuditEvent requires the name of the professional, group or representative a policy names; the
    # Consent carries none (CH:PPQm), so without a local one the identifier stands for it.
    entity["name"] = subject.name or subject.value
    limited = subject.access_limited_to.isoformat() if subject.access_limited_to else None
    details = _details((("AccessLevel", subject.access_level), ("AccessLimitedToDate", limited)))
    if details:
        entity["detail"] = details
    return entity


def _entity(identifier: dict, entity_type: tuple[str, str], role: dict) -> dict:
    return {"what": {"identifier": identifier}, "type": _coding(ENTITY_TYPE, *entity_type), "role": role}


def _details(pairs: Sequence[tuple[str, str | None]]) -> list[dict]:
    return [{"type": name, "valueBase64Binary": base64.b64encode(value.encode()).decode()}
            for name, value in pairs if value]


def _purpose_of(principal: Principal) -> dict:
    """The EPR purpose of use; an emergency's reason as its text (CH:ATC binds the coding only, so the
    trail and the ledger carry the reason with the code that it explains)."""
    purpose = _cc(PURPOSE_OF_USE_SYSTEM, principal.purpose_of_use, PURPOSE_DISPLAY.get(principal.purpose_of_use))
    if principal.purpose_of_use == "EMER" and principal.emergency_reason:
        purpose["text"] = principal.emergency_reason
    return purpose


def _coding(system: str, code: str, display: str | None) -> dict:
    coding = {"system": system, "code": code}
    if display:
        coding["display"] = display
    return coding


def _cc(system: str, code: str, display: str | None) -> dict:
    return {"coding": [_coding(system, code, display)]}
