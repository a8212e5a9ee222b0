"""The one place where FHIR R4 resources and the record's model meet.

Inbound, a request body is parsed and validated as an R4 resource with `fhir.resources.R4B` (types,
cardinalities, unknown elements, base64) and mapped into the model. Outbound, entries are written
as plain FHIR JSON: building pydantic models for every search hit would cost more than the search
itself, and the tests validate what this module emits against the same R4B models.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import uuid
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import orjson
from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from adapters.cara.record_ids import new_record_id
from adapters.cara.client_json import JsonLimits, check_resource_sizes, load_client_json
from adapters.cara.errors import InvalidInput, Issue, ProfileViolation
from adapters.cara.mhd_rules import check_provide_bundle, decode_binary, extension, first_coding, normalised_date
from adapters.cara.model import (
    Author,
    Code,
    DocumentEntry,
    Identifier,
    NewDocument,
    PendingRelation,
    Submission,
    SubmissionSet,
)
from adapters.cara.vocabulary import (
    EXT_AUTHOR_ROLE,
    EXT_DELETION_STATUS,
    EXT_DESIGNATION_TYPE,
    EXT_SOURCE_ID,
    LIST_TYPES_SYSTEM,
    PROFILE_DOCREF,
    PROFILE_SUBMISSIONSET,
    RFC3986,
    SNOMED,
    SPID_SYSTEM,
    SUBMISSION_SET_DESIGNATION,
)

_KNOWN_DOC_EXTENSIONS = {EXT_AUTHOR_ROLE, EXT_DELETION_STATUS}
# The Bundles the MHD answers claim (CH EPR FHIR 5.0.0).
PROFILE_FIND_RESPONSE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/ch-mhd-documentreference-comprehensive-bundle"
PROFILE_PROVIDE_RESPONSE = ("http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/"
                            "ch-mhd-providedocumentbundle-comprehensive-response")


# -- inbound ------------------------------------------------------------------------------------
def parse_resource(raw: bytes, expected_type: str, *, limits: JsonLimits) -> dict[str, Any]:
    """JSON bytes → a dict that is a valid R4 `expected_type`, or InvalidInput naming each error.

    Every client body comes through here: duplicate members (400), nesting (422) and the metadata
    budget (413) are checked on the raw bytes before parsing (`client_json`), each resource's size
    before FHIR validation. `limits` has no default: every use-case passes the configured budget
    (`EPR_MAX_*`), so no body can be parsed under another one by forgetting it."""
    data = load_client_json(raw, root=expected_type, limits=limits)
    if not isinstance(data, dict) or "resourceType" not in data:
        raise InvalidInput("the body is not a FHIR resource (no resourceType)")
    if data["resourceType"] != expected_type:
        raise InvalidInput(f"expected a {expected_type}, got resourceType {data['resourceType']!r}",
                           location="resourceType")
    check_resource_sizes(data, root=expected_type, limits=limits)
    try:
        get_fhir_model_class(expected_type).model_validate(_checked_base64(data, expected_type))
    except ValidationError as exc:
        issues = [Issue(error["msg"], _fhirpath(expected_type, error["loc"])) for error in exc.errors()[:20]]
        raise InvalidInput(f"the {expected_type} is not valid FHIR R4", issues=issues) from None
    return data


def _checked_base64(data: dict[str, Any], root: str) -> dict[str, Any]:
    """Binary data must be strict base64: the R4B model tolerates characters outside the alphabet.
    Returns what the R4B model is then given: `data` with each Binary.data checked here replaced by a
    short valid value. Why: the model decodes the base64 again (pydantic's lenient decoder, which
    accepts everything the strict one does), ~0.4 ms for a 50 KB document, and what it makes of the
    bytes is thrown away; a value the strict decoder accepts is valid to the model whatever its
    content, so the verdict on the resource is the same (tests/unit/adapters/test_fhir_validation_shortcut.py)."""
    entries = data.get("entry") if data.get("resourceType") != "Binary" else None
    binaries = [(root, None, data)] if data.get("resourceType") == "Binary" else [
        (f"{root}.entry[{i}].resource", i, e.get("resource")) for i, e in enumerate(entries or [])
        if isinstance(e, dict) and isinstance(e.get("resource"), dict) and e["resource"].get("resourceType") == "Binary"]
    checked: list[int | None] = []
    for where, index, binary in binaries:
        value = binary.get("data")
        if not isinstance(value, str):  # absent, or not a string: the R4B model reports it
            continue
        try:
            decode_binary(value)
        except (binascii.Error, ValueError):
            raise InvalidInput("Binary.data is not valid base64", location=f"{where}.data") from None
        checked.append(index)
    if not checked:
        return data
    if checked == [None]:
        return {**data, "data": _VALID_BASE64}
    entries = list(entries)
    for index in checked:
        entries[index] = {**entries[index], "resource": {**entries[index]["resource"], "data": _VALID_BASE64}}
    return {**data, "entry": entries}


_VALID_BASE64 = "AAAA"


def _fhirpath(root: str, loc: tuple) -> str:
    path = root
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path.replace(".resource_type", ".resourceType")


def submission_from_bundle(bundle: dict[str, Any]) -> Submission:
    """A Provide Document Bundle → Submission, after the CH MHD Comprehensive rules have passed."""
    issues = check_provide_bundle(bundle)
    if issues:
        raise ProfileViolation("the Bundle breaks the CH MHD Comprehensive Provide Document Bundle rules",
                               issues=issues)
    resources = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    listed = next(r for r in resources.values() if r["resourceType"] == "List")
    spid = listed["subject"]["identifier"]["value"]
    submission_set_id = new_record_id()
    submission_set = SubmissionSet(
        submission_set_id=submission_set_id,
        unique_id=next(x["value"] for x in listed["identifier"] if x.get("use") == "usual"),
        source_id=extension(listed, EXT_SOURCE_ID)["valueIdentifier"]["value"],
        patient_pid="",
        submission_time=normalised_date(listed.get("date"), "dateTime"),
        content_type=_code(first_coding(extension(listed, EXT_DESIGNATION_TYPE)["valueCodeableConcept"])),
        authors=_list_authors(listed),
        title=listed.get("title"),
        entry_uuid=next((x["value"] for x in listed.get("identifier", []) if x.get("use") == "official"), None),
    )
    documents = tuple(
        replace(_new_document(e["resource"], resources, submission_set_id), location=f"Bundle.entry[{i}].resource")
        for i, e in enumerate(bundle["entry"]) if e["resource"]["resourceType"] == "DocumentReference"
    )
    return Submission(submission_set=submission_set, documents=documents, spid=spid)


def _new_document(doc: dict[str, Any], resources: dict[str, dict], submission_set_id: str) -> NewDocument:
    attachment = doc["content"][0]["attachment"]
    data = decode_binary(resources[attachment["url"]]["data"])
    entry_id = new_record_id()
    entry = DocumentEntry(
        entry_id=entry_id,
        unique_id=doc["masterIdentifier"]["value"],
        patient_pid="",
        status="current",
        mime_type=attachment["contentType"],
        creation_time=normalised_date(attachment["creation"], "dateTime"),
        original_provider_role=_code(extension(doc, EXT_AUTHOR_ROLE)["valueCoding"]),
        size=len(data),
        sha1=hashlib.sha1(data).hexdigest(),
        entry_uuid=next((x["value"] for x in doc.get("identifier", []) if x.get("use") == "official"), None)
        or f"urn:uuid:{entry_id}",  # the submitter sent none: the entry's own id is its entryUUID
        submission_set_id=submission_set_id,
        **document_metadata(doc),
    )
    relations = tuple(_pending_relation(r) for r in doc.get("relatesTo", []))
    return NewDocument(entry=entry, content=data, relations=relations)


def document_metadata(doc: dict[str, Any]) -> dict[str, Any]:
    """The DocumentReference's metadata as the entry's fields: what a provide stores beside the document's
    own facts (its bytes, ids, creation time, role), and exactly what a CH:MHD-1 update may change
    (`metadata_update.read_update`): one reading of both. The CH MHD rules have passed."""
    content = doc["content"][0]
    attachment = content["attachment"]
    context = doc.get("context") or {}
    source_patient = next(c for c in doc["contained"] if c["id"] == context["sourcePatientInfo"]["reference"][1:])
    usual = next(x for x in source_patient["identifier"] if x.get("use") == "usual" and x.get("value"))
    period = context.get("period") or {}
    return {
        "type_code": _code(first_coding(doc["type"])),
        "class_codes": [_code(first_coding(c)) for c in doc["category"]],
        "format_code": _code(content["format"]),
        "confidentiality": [_code(c) for label in doc["securityLabel"] for c in label.get("coding", [])],
        "facility_type": _code(first_coding(context["facilityType"])),
        "practice_setting": _code(first_coding(context["practiceSetting"])),
        "language": attachment["language"],
        "title": attachment["title"],
        "date": normalised_date(doc.get("date"), "instant"),
        "description": doc.get("description"),
        "event_codes": [_code(c) for concept in context.get("event", []) for c in concept.get("coding", [])],
        "service_start": normalised_date(period.get("start"), "dateTime"),
        "service_stop": normalised_date(period.get("end"), "dateTime"),
        "authors": _authors(doc),
        "source_patient": source_patient,
        "source_patient_id": Identifier(usual.get("system", ""), usual["value"]),
        "related": context.get("related", []),
        "deletion_status": _code((extension(doc, EXT_DELETION_STATUS) or {}).get("valueCoding")),
        "extensions": [e for e in doc.get("extension", []) if e.get("url") not in _KNOWN_DOC_EXTENSIONS],
    }


def _pending_relation(relates_to: dict[str, Any]) -> PendingRelation:
    target = relates_to.get("target") or {}
    reference = target.get("reference") or ""
    if "DocumentReference/" in reference:
        return PendingRelation(relates_to["code"], target_entry_id=reference.rsplit("DocumentReference/", 1)[1])
    identifier = (target.get("identifier") or {}).get("value")
    if not identifier:
        raise ProfileViolation("relatesTo.target must reference a DocumentReference by id or by its uniqueId",
                               location="DocumentReference.relatesTo.target")
    return PendingRelation(relates_to["code"], target_unique_id=identifier)


def _authors(resource: dict[str, Any]) -> list[Author]:
    contained = {f"#{c.get('id')}": c for c in resource.get("contained", [])}
    authors = []
    for reference in resource.get("author", []):
        target = contained.get(reference.get("reference", ""))
        if target is None:
            authors.append(Author({"reference": reference}))
            continue
        named, organization = target, None
        if target["resourceType"] == "PractitionerRole":
            named = contained.get((target.get("practitioner") or {}).get("reference", ""), {})
            # Its organisation is kept too: the author's institution (and its OID) a community requires.
            organization = contained.get((target.get("organization") or {}).get("reference", ""))
        names = named.get("name", []) if named.get("resourceType") != "Organization" else []
        family = tuple(n["family"] for n in names if n.get("family"))
        given = tuple(g for n in names for g in n.get("given", []))
        linked = [target] + ([named] if named is not target and named else []) + ([organization] if organization else [])
        authors.append(Author({"reference": reference, "contained": linked}, family, given))
    return authors


def _list_authors(listed: dict[str, Any]) -> list[Author]:
    """A List's author is its `source` (MHD: SubmissionSet.author), kept as sent."""
    source = listed.get("source")
    return _authors({"author": [source], "contained": listed.get("contained", [])}) if source else []


def _code(coding: dict[str, Any] | None) -> Code | None:
    return Code.from_dict(coding) if coding and coding.get("code") else None


# -- outbound -----------------------------------------------------------------------------------
def document_reference(entry: DocumentEntry, *, spid: str, base_url: str) -> dict[str, Any]:
    """DocumentEntry → CH MHD Comprehensive DocumentReference (JSON dict)."""
    contained = [entry.source_patient] if entry.source_patient else []
    author_refs = []
    for author in entry.authors:
        author_refs.append(author.resource["reference"])
        contained.extend(c for c in author.resource.get("contained", []) if c not in contained)
    extensions = [{"url": EXT_AUTHOR_ROLE, "valueCoding": entry.original_provider_role.as_coding()}]
    if entry.deletion_status:
        extensions.append({"url": EXT_DELETION_STATUS, "valueCoding": entry.deletion_status.as_coding()})
    resource: dict[str, Any] = {
        "resourceType": "DocumentReference",
        "id": entry.entry_id,
        "meta": {"versionId": str(entry.version), "profile": [PROFILE_DOCREF]},
    }
    if contained:
        resource["contained"] = contained
    resource["extension"] = extensions + entry.extensions
    resource["masterIdentifier"] = {"use": "usual", "system": RFC3986, "value": entry.unique_id}
    # Always an entryUUID (ITI-67): entries stored before one was generated answer with their own id.
    resource["identifier"] = [{"use": "official", "system": RFC3986,
                               "value": entry.entry_uuid or f"urn:uuid:{entry.entry_id}"}]
    resource["status"] = entry.status
    resource["type"] = {"coding": [entry.type_code.as_coding()]}
    resource["category"] = [{"coding": [c.as_coding()]} for c in entry.class_codes]
    resource["subject"] = {"identifier": {"system": SPID_SYSTEM, "value": spid}}
    if entry.date:
        resource["date"] = entry.date
    if author_refs:
        resource["author"] = author_refs
    if entry.description:
        resource["description"] = entry.description
    if entry.relations:
        resource["relatesTo"] = [
            {"code": r.code, "target": {"reference": f"DocumentReference/{r.target_entry_id}"}} for r in entry.relations
        ]
    resource["securityLabel"] = [{"coding": [c.as_coding()]} for c in entry.confidentiality]
    resource["content"] = [{
        "attachment": {
            "contentType": entry.mime_type,
            "language": entry.language,
            "url": f"{base_url}/Binary/{entry.entry_id}",
            "size": entry.size,
            "hash": _sha1_base64(entry.sha1),
            "title": entry.title,
            "creation": entry.creation_time,
        },
        "format": entry.format_code.as_coding(),
    }]
    context: dict[str, Any] = {}
    if entry.event_codes:
        context["event"] = [{"coding": [c.as_coding()]} for c in entry.event_codes]
    if entry.service_start or entry.service_stop:
        context["period"] = {k: v for k, v in (("start", entry.service_start), ("end", entry.service_stop)) if v}
    context["facilityType"] = {"coding": [entry.facility_type.as_coding()]}
    context["practiceSetting"] = {"coding": [entry.practice_setting.as_coding()]}
    if entry.source_patient:
        context["sourcePatientInfo"] = {"reference": f"#{entry.source_patient['id']}"}
    if entry.related:
        context["related"] = entry.related
    resource["context"] = context
    return resource


def submission_set_list(subset: SubmissionSet, *, spid: str, submitted_at: str, entry_ids: Sequence[str]) -> dict[str, Any]:
    """A stored submission set → CH MHD SubmissionSet List (ch-mhd-submissionset-comprehensive), naming
    the documents `entry_ids` (those the reader may see). `submitted_at`: when the record stored it (FHIR
    instant), its meta.lastUpdated and its date when the submitter gave none."""
    designation = subset.content_type or Code(SNOMED, SUBMISSION_SET_DESIGNATION, "Procedure (procedure)")
    resource: dict[str, Any] = {
        "resourceType": "List",
        "id": subset.submission_set_id,
        "meta": {"lastUpdated": submitted_at, "profile": [PROFILE_SUBMISSIONSET]},
        "extension": [
            {"url": EXT_DESIGNATION_TYPE, "valueCodeableConcept": {"coding": [designation.as_coding()]}},
            {"url": EXT_SOURCE_ID, "valueIdentifier": {"system": RFC3986, "value": subset.source_id}},
        ],
        # Always an entryUUID, as for DocumentReferences: a set submitted without one answers with its own id.
        "identifier": [{"use": "usual", "system": RFC3986, "value": subset.unique_id},
                       {"use": "official", "system": RFC3986,
                        "value": subset.entry_uuid or f"urn:uuid:{subset.submission_set_id}"}],
        "status": "current",
        "mode": "working",
    }
    if subset.title:
        resource["title"] = subset.title
    resource["code"] = {"coding": [{"system": LIST_TYPES_SYSTEM, "code": "submissionset",
                                    "display": "SubmissionSet as a FHIR List"}]}
    resource["subject"] = {"identifier": {"system": SPID_SYSTEM, "value": spid}}
    resource["date"] = subset.submission_time or submitted_at
    source = _list_source(subset.authors)
    if source:
        resource["source"] = source
    resource["entry"] = [{"item": {"reference": f"DocumentReference/{entry_id}"}} for entry_id in entry_ids]
    return resource


def _list_source(authors: list[Author]) -> dict[str, Any] | None:
    """List.source, not contained (the CH profile is MHD's UnContained one): the author's own reference
    when it names no contained resource, else its contained person by identifier and name."""
    if not authors:
        return None
    reference = authors[0].resource.get("reference") or {}
    if not str(reference.get("reference", "")).startswith("#"):
        return dict(reference) or None
    person = next((c for c in authors[0].resource.get("contained", [])
                   if c.get("resourceType") in ("Practitioner", "PractitionerRole", "Patient", "RelatedPerson")), {})
    name = " ".join([*authors[0].given, *authors[0].family])
    source = {k: v for k, v in (("identifier", (person.get("identifier") or [None])[0]), ("display", name)) if v}
    return source or None


def _sha1_base64(hex_digest: str) -> str:
    return base64.b64encode(bytes.fromhex(hex_digest)).decode()


def searchset(resources: list[dict[str, Any]], *, total: int, self_url: str, next_url: str | None,
              base_url: str) -> dict[str, Any]:
    bundle = _searchset_envelope(total=total, self_url=self_url, next_url=next_url)
    if resources:  # FHIR JSON has no empty arrays
        bundle["entry"] = [search_match(r, base_url=base_url) for r in resources]
    return bundle


def search_match(resource: dict[str, Any], *, base_url: str) -> dict[str, Any]:
    """One entry of a searchset Bundle."""
    return {"fullUrl": f"{base_url}/{resource['resourceType']}/{resource['id']}", "resource": resource,
            "search": {"mode": "match"}}


def searchset_json(entries: list[bytes], *, total: int, self_url: str, next_url: str | None) -> bytes:
    """The JSON of `searchset`, assembled from entries (`search_match`) serialised beforehand: a
    search answers the same entries again and again, so each is serialised once, not per answer."""
    envelope = orjson.dumps({"resourceType": "Bundle", "meta": {"profile": [PROFILE_FIND_RESPONSE]}}
                            | _searchset_envelope(total=total, self_url=self_url, next_url=next_url))
    if not entries:
        return envelope
    return b"".join((envelope[:-1], b',"entry":[', b",".join(entries), b"]}"))


def _searchset_envelope(*, total: int, self_url: str, next_url: str | None) -> dict[str, Any]:
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    return {"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset", "total": total, "link": links}


def transaction_locations(bundle: dict[str, Any], submission: Submission, result, *,
                          base_url: str) -> list[tuple[str, str]]:
    """(status, location) for each entry of the request Bundle, in its order (ITI-65 response)."""
    entry_ids = {d.entry.unique_id: p for d, p in zip(submission.documents, result.documents, strict=True)}
    by_binary_url = {}
    for entry in bundle["entry"]:
        resource = entry["resource"]
        if resource["resourceType"] == "DocumentReference":
            by_binary_url[resource["content"][0]["attachment"]["url"]] = resource["masterIdentifier"]["value"]
    locations = []
    for entry in bundle["entry"]:
        resource = entry["resource"]
        kind = resource["resourceType"]
        if kind == "List":
            created = any(p.created for p in result.documents)
            locations.append((_status(created), f"{base_url}/List/{result.submission_set_id}"))
            continue
        unique_id = resource["masterIdentifier"]["value"] if kind == "DocumentReference" else by_binary_url[entry["fullUrl"]]
        provided = entry_ids[unique_id]
        locations.append((_status(provided.created), f"{base_url}/{kind}/{provided.entry_id}"))
    return locations


def _status(created: bool) -> str:
    return "201 Created" if created else "200 OK"


def transaction_response(locations: list[tuple[str, str]], *, last_modified: str) -> dict[str, Any]:
    """`locations`: (status, location) per request entry, in the request's order."""
    return {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"profile": [PROFILE_PROVIDE_RESPONSE]},
        "type": "transaction-response",
        "entry": [
            {"response": {"status": status, "location": location, "lastModified": last_modified}}
            for status, location in locations
        ],
    }
