"""CH:PPQm `Consent` (CH EPR FHIR 5.0.0, PpqmConsentTemplate201…304) to and from `Policy`.

Incoming Consents are checked strictly against the template profiles and the official examples, and
every fault is reported with its place in the Consent, because a patient portal must be able to fix a
refused policy set. The actor of each template, as the official examples write it:

| template | role | reference.identifier type (system urn:ietf:rfc:3986) | identifier.system | purpose |
|---|---|---|---|---|
| 201 | PAT | urn:e-health-suisse:2015:epr-spid | urn:oid:2.16.756.5.30.1.127.3.10.3 | – |
| 202 | HCP | – (`reference.display` = "all") | – | EMER |
| 203 | HCP | – (`reference.display` = "all") | – | NORM, AUTO, DICOM_AUTO |
| 301, 304 | HCP | urn:gs1:gln | urn:oid:2.51.1.3 | NORM |
| 302 | HCP | urn:oasis:names:tc:xspa:1.0:subject:organization-id | (none; value is urn:oid:…) | NORM |
| 303 | REP | urn:e-health-suisse:representative-id | (none) | – |

The Consent carries no names (`reference.display` is 0..0 for named actors), so `Policy.subject_name`
stays local. Template rules shared with the PDP (allowed rules, subjects, validity) live in
`consent.policies` and are mapped back to Consent locations here.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.vocabulary import GLN_SYSTEM, PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM, SPID_SYSTEM
from consent.errors import ConsentInvalid, PolicyInvalid
from consent.policies import TEMPLATES, Policy, policy_problems, validate_policy

URI_SYSTEM = "urn:ietf:rfc:3986"
IDENTIFIER_TYPE_SYSTEM = "http://fhir.ch/ig/ch-epr-fhir/CodeSystem/PpqmConsentIdentifierType"
SCOPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/consentscope"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PROFILE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/PpqmConsentTemplate{}"

# template -> (actor role, identifier type code, identifier system, purposes of use)
ACTORS: dict[int, tuple[str, str | None, str | None, tuple[str, ...]]] = {
    201: ("PAT", "urn:e-health-suisse:2015:epr-spid", SPID_SYSTEM, ()),
    202: ("HCP", None, None, ("EMER",)),
    203: ("HCP", None, None, ("NORM", "AUTO", "DICOM_AUTO")),
    301: ("HCP", "urn:gs1:gln", GLN_SYSTEM, ("NORM",)),
    302: ("HCP", "urn:oasis:names:tc:xspa:1.0:subject:organization-id", None, ("NORM",)),
    303: ("REP", "urn:e-health-suisse:representative-id", None, ()),
    304: ("HCP", "urn:gs1:gln", GLN_SYSTEM, ("NORM",)),
}
TITLES = {
    201: "Template 201 - Full access for the patient",
    202: "Template 202 - Read access in emergency mode",
    203: "Template 203 - Default provide level",
    301: "Template 301 - Read access level for a healthcare professional",
    302: "Template 302 - Read access level for a group of healthcare professionals",
    303: "Template 303 - Full access for a representative",
    304: "Template 304 - Read access for a healthcare professional, with delegation",
}
# Elements PpqmConsent sets to 0..0.
FORBIDDEN = ("dateTime", "performer", "organization", "sourceAttachment", "sourceReference", "policy",
             "verification")
FORBIDDEN_IN_PROVISION = ("type", "action", "securityLabel", "class", "code", "dataPeriod", "data", "provision")
LOCATIONS = {
    "policy_set_id": "Consent.identifier[policySetId].value",
    "template": "Consent.identifier[templateId].value",
    "patient_spid": "Consent.patient.identifier.value",
    "rule": "Consent.policyRule.coding[0].code",
    "subject_id": "Consent.provision.actor[0].reference.identifier.value",
    "start": "Consent.provision.period.start",
    "end": "Consent.provision.period.end",
    "period": "Consent.provision.period",
}


def policy_from_consent(resource: Any) -> Policy:
    """The Policy a CH:PPQm Consent describes; ConsentInvalid(message, location) on the first fault."""
    consent = _object(resource, "Consent")
    if consent.get("resourceType") != "Consent":
        raise ConsentInvalid(f"resourceType must be Consent, got {consent.get('resourceType')!r}",
                             "Consent.resourceType")
    for key in FORBIDDEN:
        if key in consent:
            raise ConsentInvalid(f"{key} must be absent in a CH:PPQm Consent", f"Consent.{key}")
    if consent.get("status") != "active":
        raise ConsentInvalid(f"status must be active, got {consent.get('status')!r}", "Consent.status")
    _fixed_coding(consent.get("scope"), SCOPE_SYSTEM, "patient-privacy", "Consent.scope")
    category = _list(consent.get("category"), "Consent.category", exactly=1)
    _fixed_coding(category[0], ACT_CODE_SYSTEM, "INFA", "Consent.category[0]")
    policy_set_id = _identifier_slice(consent, "policySetId")
    template_text = _identifier_slice(consent, "templateId")
    if template_text not in {str(t) for t in TEMPLATES}:
        raise ConsentInvalid(f"unknown template {template_text!r} (expected one of "
                             f"{', '.join(map(str, TEMPLATES))})", LOCATIONS["template"])
    template = int(template_text)
    spid = _patient(consent)
    rule = _single_coding(consent.get("policyRule"), "Consent.policyRule", system=URI_SYSTEM)
    provision = _object(consent.get("provision"), "Consent.provision")
    for key in FORBIDDEN_IN_PROVISION:
        if key in provision:
            raise ConsentInvalid(f"provision.{key} must be absent in a CH:PPQm Consent", f"Consent.provision.{key}")
    subject_id = _actor(provision, template)
    _purposes(provision, template)
    start, end = _period(provision)
    policy = Policy(policy_set_id=policy_set_id, template=template, patient_spid=spid, rule=rule,
                    subject_id=subject_id, start=start, end=end)
    problems = policy_problems(policy)
    if problems:
        raise ConsentInvalid("; ".join(p.message for p in problems), LOCATIONS[problems[0].field])
    return policy


def consent_from_policy(policy: Policy) -> dict[str, Any]:
    """The CH:PPQm Consent for a valid Policy (no `id`: the repository assigns it)."""
    problems = validate_policy(policy)
    if problems:
        raise PolicyInvalid(problems)
    template = policy.template
    role, id_type, id_system, purposes = ACTORS[template]
    reference: dict[str, Any] = {"display": "all"}
    if id_type is not None:
        identifier: dict[str, Any] = {"type": {"coding": [{"system": URI_SYSTEM, "code": id_type}]}}
        if id_system is not None:
            identifier["system"] = id_system
        identifier["value"] = policy.subject_id
        reference = {"identifier": identifier}
    provision: dict[str, Any] = {}
    period = {k: v.isoformat() for k, v in (("start", policy.start), ("end", policy.end)) if v is not None}
    if period:
        provision["period"] = period
    provision["actor"] = [{"role": {"coding": [{"system": ROLE_SYSTEM, "code": role}]}, "reference": reference}]
    if purposes:
        provision["purpose"] = [{"system": PURPOSE_OF_USE_SYSTEM, "code": code} for code in purposes]
    return {
        "resourceType": "Consent",
        "meta": {"profile": [PROFILE.format(template)]},
        "text": {"status": "empty",
                 "div": f'<div xmlns="http://www.w3.org/1999/xhtml"><p>{TITLES[template]}</p></div>'},
        "identifier": [_identifier("policySetId", policy.policy_set_id), _identifier("templateId", str(template))],
        "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": ACT_CODE_SYSTEM, "code": "INFA"}]}],
        "patient": {"identifier": {"system": SPID_SYSTEM, "value": policy.patient_spid}},
        "policyRule": {"coding": [{"system": URI_SYSTEM, "code": policy.rule}]},
        "provision": provision,
    }


def _identifier(code: str, value: str) -> dict[str, Any]:
    return {"type": {"coding": [{"system": IDENTIFIER_TYPE_SYSTEM, "code": code}]}, "value": value}


def _object(value: Any, location: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ConsentInvalid("required object is missing or not an object", location)
    return value


def _list(value: Any, location: str, *, exactly: int | None = None) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConsentInvalid("required list is missing or empty", location)
    if exactly is not None and len(value) != exactly:
        raise ConsentInvalid(f"must hold exactly {exactly} entr{'y' if exactly == 1 else 'ies'}, got {len(value)}",
                             location)
    return value


def _string(value: Any, location: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConsentInvalid("required string is missing or empty", location)
    return value


def _single_coding(concept: Any, location: str, *, system: str) -> str:
    """The code of a CodeableConcept that must hold exactly one coding of `system`."""
    coding = _object(_list(_object(concept, location).get("coding"), f"{location}.coding", exactly=1)[0],
                     f"{location}.coding[0]")
    if coding.get("system") != system:
        raise ConsentInvalid(f"coding system must be {system}, got {coding.get('system')!r}",
                             f"{location}.coding[0].system")
    return _string(coding.get("code"), f"{location}.coding[0].code")


def _fixed_coding(concept: Any, system: str, code: str, location: str) -> None:
    found = _single_coding(concept, location, system=system)
    if found != code:
        raise ConsentInvalid(f"must be {system}#{code}, got {found!r}", f"{location}.coding[0].code")


def _identifier_slice(consent: dict[str, Any], code: str) -> str:
    identifiers = _list(consent.get("identifier"), "Consent.identifier")
    matches = [i for i in identifiers if isinstance(i, dict) and isinstance(i.get("type"), dict)
               and any(isinstance(c, dict) and c.get("system") == IDENTIFIER_TYPE_SYSTEM and c.get("code") == code
                       for c in i["type"].get("coding") or [])]
    location = f"Consent.identifier[{code}]"
    if len(matches) != 1:
        raise ConsentInvalid(f"identifier slice {code} ({IDENTIFIER_TYPE_SYSTEM}) must appear exactly once, "
                             f"found {len(matches)}", location)
    if "system" in matches[0]:
        raise ConsentInvalid(f"identifier slice {code} takes no system", f"{location}.system")
    return _string(matches[0].get("value"), f"{location}.value")


def _patient(consent: dict[str, Any]) -> str:
    patient = _object(consent.get("patient"), "Consent.patient")
    if "reference" in patient:
        raise ConsentInvalid("the patient is referenced by identifier only", "Consent.patient.reference")
    identifier = _object(patient.get("identifier"), "Consent.patient.identifier")
    if identifier.get("system") != SPID_SYSTEM:
        raise ConsentInvalid(f"patient identifier system must be {SPID_SYSTEM} (EPR-SPID), got "
                             f"{identifier.get('system')!r}", "Consent.patient.identifier.system")
    return _string(identifier.get("value"), LOCATIONS["patient_spid"])


def _actor(provision: dict[str, Any], template: int) -> str | None:
    role, id_type, id_system, _ = ACTORS[template]
    actor = _object(_list(provision.get("actor"), "Consent.provision.actor", exactly=1)[0],
                    "Consent.provision.actor[0]")
    where = "Consent.provision.actor[0]"
    found_role = _single_coding(actor.get("role"), f"{where}.role", system=ROLE_SYSTEM)
    if found_role != role:
        raise ConsentInvalid(f"template {template} actor role must be {role}, got {found_role!r}",
                             f"{where}.role.coding[0].code")
    reference = _object(actor.get("reference"), f"{where}.reference")
    for key in ("reference", "type"):
        if key in reference:
            raise ConsentInvalid(f"the actor is named by identifier only, not by {key}", f"{where}.reference.{key}")
    if id_type is None:
        if "identifier" in reference or reference.get("display") != "all":
            raise ConsentInvalid(f"template {template} addresses all professionals: reference.display must be "
                                 "'all' and no identifier", f"{where}.reference")
        return None
    if "display" in reference:
        raise ConsentInvalid(f"template {template} actor carries no display name", f"{where}.reference.display")
    identifier = _object(reference.get("identifier"), f"{where}.reference.identifier")
    found_type = _single_coding(identifier.get("type"), f"{where}.reference.identifier.type", system=URI_SYSTEM)
    if found_type != id_type:
        raise ConsentInvalid(f"template {template} actor identifier type must be {id_type}, got {found_type!r}",
                             f"{where}.reference.identifier.type.coding[0].code")
    if id_system is not None and identifier.get("system") != id_system:
        raise ConsentInvalid(f"template {template} actor identifier system must be {id_system}, got "
                             f"{identifier.get('system')!r}", f"{where}.reference.identifier.system")
    return _string(identifier.get("value"), LOCATIONS["subject_id"])


def _purposes(provision: dict[str, Any], template: int) -> None:
    expected = ACTORS[template][3]
    purposes = provision.get("purpose", [])
    if not isinstance(purposes, list):
        raise ConsentInvalid("purpose must be a list", "Consent.provision.purpose")
    for i, coding in enumerate(purposes):
        if not isinstance(coding, dict) or coding.get("system") != PURPOSE_OF_USE_SYSTEM:
            raise ConsentInvalid(f"purpose system must be {PURPOSE_OF_USE_SYSTEM}",
                                 f"Consent.provision.purpose[{i}].system")
    found = sorted(str(c.get("code")) for c in purposes)
    if found != sorted(expected):
        raise ConsentInvalid(f"template {template} requires purpose(s) {', '.join(expected) or 'none'}, "
                             f"got {', '.join(found) or 'none'}", "Consent.provision.purpose")


def _period(provision: dict[str, Any]) -> tuple[date | None, date | None]:
    if "period" not in provision:
        return None, None
    period = _object(provision["period"], "Consent.provision.period")
    return _date(period.get("start"), "start"), _date(period.get("end"), "end")


def _date(value: Any, which: str) -> date | None:
    if value is None:
        return None
    try:
        return parse_full_date(value)
    except InvalidDate as refused:
        raise ConsentInvalid(f"{which} date (yyyy-mm-dd, day precision): {refused.reason}", LOCATIONS[which]) from None
