"""CH:PPQm Consent <-> Policy against the seven official examples, read in place, and the template rules."""

from __future__ import annotations

import copy
import json
import os
from datetime import date
from pathlib import Path

import pytest
from fhir.resources.R4B.consent import Consent

from consent.errors import ConsentInvalid, PolicyInvalid
from consent.policies import Policy, onboarding_policies, validate_policy
from consent.ppqm import consent_from_policy, policy_from_consent

from official_examples import FIXTURES, require_examples
P = "urn:e-health-suisse:2015:policies:"
SPID = "761337610000000002"
GLN = "7600000000005"


@pytest.fixture(scope="module", autouse=True)
def consent_dir() -> Path:
    folder = FIXTURES / "ch-epr-fhir"
    return require_examples(folder)


def example(folder: Path, template: int) -> dict:
    return json.loads((folder / f"Consent-PpqmConsentTemplate{template}Example.json").read_text(encoding="utf-8"))


EXPECTED = {
    201: Policy("urn:uuid:57ab9b0d-7d97-4d85-9e4b-02bc7c939ad9", 201, SPID, P + "access-level:full", SPID),
    202: Policy("urn:uuid:bf6c1fb6-2eb9-49ad-b96b-1a4ac55fc7bd", 202, SPID, P + "access-level:normal"),
    203: Policy("urn:uuid:710e4211-d431-430b-a849-1d689e74e4c2", 203, SPID, P + "provide-level:restricted"),
    301: Policy("urn:uuid:f1e1ed8e-0582-4e47-a76e-5e8f6cc0908f", 301, SPID, P + "access-level:restricted", GLN,
                end=date(2022, 2, 15)),
    302: Policy("urn:uuid:c23c862a-b297-43c7-875b-d933982c9756", 302, SPID, P + "access-level:restricted",
                "urn:oid:1.2.3.4.5", start=date(2025, 2, 1), end=date(2025, 2, 15)),
    303: Policy("urn:uuid:f663289d-4cc4-41d7-a01d-213e18e1f722", 303, SPID, P + "access-level:full",
                "representative12345"),
    304: Policy("urn:uuid:f1e1ed8e-0582-4e47-a76e-5e8f6cc09304", 304, SPID, P + "access-level:delegation-and-normal",
                GLN, start=date(2024, 5, 1), end=date(2024, 5, 31)),
}


def meaning(consent: dict) -> dict:
    """What a Consent says, independent of narrative, id and element order."""
    provision = consent["provision"]
    actor = provision["actor"][0]
    return {
        "identifiers": sorted((i["type"]["coding"][0]["code"], i["value"]) for i in consent["identifier"]),
        "status": consent["status"], "scope": consent["scope"], "category": consent["category"],
        "patient": consent["patient"], "rule": consent["policyRule"]["coding"],
        "actor": (actor["role"]["coding"], actor["reference"]),
        "period": provision.get("period"), "purposes": sorted(p["code"] for p in provision.get("purpose", [])),
        "profile": consent["meta"]["profile"],
    }


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_an_official_example_maps_to_its_policy(consent_dir, template):
    assert policy_from_consent(example(consent_dir, template)) == EXPECTED[template]


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_a_policy_maps_back_to_a_consent_equal_in_meaning(consent_dir, template):
    official = example(consent_dir, template)
    made = consent_from_policy(policy_from_consent(official))
    assert meaning(made) == meaning(official)
    # Beyond meaning: the very elements of the example, apart from its id and narrative.
    assert {k: v for k, v in made.items() if k != "text"} == {k: v for k, v in official.items()
                                                              if k not in ("id", "text")}


@pytest.mark.parametrize("template", sorted(EXPECTED))
def test_the_consent_made_is_valid_fhir_r4(template):
    made = consent_from_policy(EXPECTED[template])
    assert Consent.model_validate(made).model_dump(mode="json", exclude_none=True) == made


def test_the_retrieve_response_bundle_holds_the_same_policies(consent_dir):
    bundle = json.loads((consent_dir / "Bundle-PpqmRetrieveResponseBundle.json").read_text(encoding="utf-8"))
    assert [policy_from_consent(e["resource"]) for e in bundle["entry"]] == [EXPECTED[201], EXPECTED[202],
                                                                             EXPECTED[203]]


# ---- refused Consents ------------------------------------------------------------------------------
def without_end(c):
    del c["provision"]["period"]["end"]


def set_path(*path_and_value):
    *path, key, value = path_and_value

    def mutate(c):
        node = c
        for step in path:
            node = node[step]
        node[key] = value
    return mutate


def drop_purposes(c):
    del c["provision"]["purpose"]


INVALID = {
    "302 without end date": (302, without_end, "Consent.provision.period.end", "template 302 requires an end date"),
    "304 without end date": (304, without_end, "Consent.provision.period.end", "template 304 requires an end date"),
    "wrong scope": (301, set_path("scope", "coding", 0, "code", "research"), "Consent.scope.coding[0].code",
                    "patient-privacy"),
    "unknown template": (301, set_path("identifier", 1, "value", "305"), "Consent.identifier[templateId].value",
                         "unknown template '305'"),
    "bad SPID": (301, set_path("patient", "identifier", "value", "76133761"), "Consent.patient.identifier.value",
                 "18 digits"),
    "SPID under another system": (301, set_path("patient", "identifier", "system", "urn:oid:2.16.756.5.32"),
                                  "Consent.patient.identifier.system", "EPR-SPID"),
    "draft": (201, set_path("status", "draft"), "Consent.status", "active"),
    "not INFA": (201, set_path("category", 0, "coding", 0, "code", "IDSCL"), "Consent.category[0].coding[0].code",
                 "INFA"),
    "policy set id not a uuid": (201, set_path("identifier", 0, "value", "urn:oid:1.2.3"),
                                 "Consent.identifier[policySetId].value", "urn:uuid"),
    "no templateId slice": (201, set_path("identifier", [{"type": {"coding": [{
        "system": "http://fhir.ch/ig/ch-epr-fhir/CodeSystem/PpqmConsentIdentifierType", "code": "policySetId"}]},
        "value": "urn:uuid:57ab9b0d-7d97-4d85-9e4b-02bc7c939ad9"}]), "Consent.identifier[templateId]", "found 0"),
    "rule of another template": (302, set_path("policyRule", "coding", 0, "code", P + "exclusion-list"),
                                 "Consent.policyRule.coding[0].code", "does not allow"),
    "GLN check digit": (301, set_path("provision", "actor", 0, "reference", "identifier", "value", "7600000000006"),
                        "Consent.provision.actor[0].reference.identifier.value", "check digit"),
    "GLN under the SPID system": (301, set_path("provision", "actor", 0, "reference", "identifier", "system",
                                                "urn:oid:2.16.756.5.30.1.127.3.10.3"),
                                  "Consent.provision.actor[0].reference.identifier.system", "urn:oid:2.51.1.3"),
    "group named by GLN type": (302, set_path("provision", "actor", 0, "reference", "identifier", "type", "coding", 0,
                                              "code", "urn:gs1:gln"),
                                "Consent.provision.actor[0].reference.identifier.type.coding[0].code",
                                "organization-id"),
    "group id not an OID": (302, set_path("provision", "actor", 0, "reference", "identifier", "value", "1.2.3.4.5"),
                            "Consent.provision.actor[0].reference.identifier.value", "urn:oid"),
    "201 for somebody else": (201, set_path("provision", "actor", 0, "reference", "identifier", "value",
                                            "761337610000000019"),
                              "Consent.provision.actor[0].reference.identifier.value", "own SPID"),
    "202 for one professional": (202, set_path("provision", "actor", 0, "reference", {"identifier": {
        "system": "urn:oid:2.51.1.3", "value": GLN}}), "Consent.provision.actor[0].reference", "'all'"),
    "303 with an HCP role": (303, set_path("provision", "actor", 0, "role", "coding", 0, "code", "HCP"),
                             "Consent.provision.actor[0].role.coding[0].code", "must be REP"),
    "203 without purposes": (203, drop_purposes, "Consent.provision.purpose", "NORM, AUTO, DICOM_AUTO"),
    "202 for normal use": (202, set_path("provision", "purpose", 0, "code", "NORM"), "Consent.provision.purpose",
                           "EMER"),
    "date with a time": (302, set_path("provision", "period", "end", "2025-02-15T10:00:00Z"),
                         "Consent.provision.period.end", "yyyy-mm-dd"),
    "impossible date": (302, set_path("provision", "period", "end", "2025-02-30"), "Consent.provision.period.end",
                        "2025-02 has 28 days"),
    "start after end": (302, set_path("provision", "period", "start", "2025-03-01"), "Consent.provision.period",
                        "after end date"),
    "202 with a period": (202, set_path("provision", "period", {"end": "2030-01-01"}), "Consent.provision.period",
                          "takes no start or end date"),
    "with a dateTime": (201, set_path("dateTime", "2025-01-01"), "Consent.dateTime", "absent"),
    "not a Consent": (201, set_path("resourceType", "Patient"), "Consent.resourceType", "Consent"),
}


@pytest.mark.parametrize("template, mutate, location, fragment", INVALID.values(), ids=INVALID.keys())
def test_an_invalid_consent_is_refused_with_its_location(consent_dir, template, mutate, location, fragment):
    consent = copy.deepcopy(example(consent_dir, template))
    mutate(consent)
    with pytest.raises(ConsentInvalid) as refused:
        policy_from_consent(consent)
    assert (refused.value.location, fragment in refused.value.message) == (location, True)


def test_something_that_is_not_an_object_is_refused():
    with pytest.raises(ConsentInvalid) as refused:
        policy_from_consent(["Consent"])
    assert refused.value.location == "Consent"


# ---- template rules of the Policy itself -------------------------------------------------------------
def policy(**changes) -> Policy:
    fields = {"policy_set_id": "urn:uuid:00000000-0000-4000-8000-000000000301", "template": 301,
              "patient_spid": SPID, "rule": P + "access-level:normal", "subject_id": GLN} | changes
    return Policy(**fields)


RULES = {
    "a plain 301": (policy(), []),
    "a 301 block with an end": (policy(rule=P + "exclusion-list", end=date(2026, 1, 1)), []),
    "a 301 starting without end": (policy(start=date(2025, 1, 1)),
                                   ["a start date needs an end date (only an end date may stand alone)"]),
    "a 302 without end": (policy(template=302, subject_id="urn:oid:1.2.3"), ["template 302 requires an end date"]),
    "a 304 without end": (policy(template=304, rule=P + "access-level:delegation-and-restricted"),
                          ["template 304 requires an end date"]),
    "a 303 with a period (XACML allows it)": (policy(template=303, rule=P + "access-level:full", subject_id="rep-1",
                                                     start=date(2025, 1, 1), end=date(2025, 12, 31)), []),
    "a 301 with a 304 rule": (policy(rule=P + "access-level:delegation-and-normal"),
                              [f"template 301 does not allow policy rule '{P}access-level:delegation-and-normal' "
                               f"(allowed: {P}access-level:normal, {P}access-level:restricted, {P}exclusion-list)"]),
    "a 301 without subject": (policy(subject_id=None), ["template 301 requires a subject: a GLN"]),
    "a 203 with a subject": (policy(template=203, rule=P + "provide-level:secret", subject_id=GLN),
                             [f"template 203 addresses all professionals and takes no subject, got '{GLN}'"]),
    "an unknown template": (policy(template=305), ["unknown template 305 (expected one of 201, 202, 203, 301, 302, "
                                                   "303, 304)"]),
    "start after end": (policy(start=date(2025, 2, 1), end=date(2025, 1, 31)),
                        ["start date 2025-02-01 is after end date 2025-01-31"]),
}


@pytest.mark.parametrize("candidate, problems", RULES.values(), ids=RULES.keys())
def test_template_rules(candidate, problems):
    assert validate_policy(candidate) == problems


def test_an_invalid_policy_never_becomes_a_consent():
    with pytest.raises(PolicyInvalid) as refused:
        consent_from_policy(policy(template=302, subject_id="urn:oid:1.2.3"))
    assert refused.value.problems == ["template 302 requires an end date"]


def test_onboarding_writes_the_legal_defaults_as_valid_consents():
    ids = ("urn:uuid:00000000-0000-4000-8000-000000000001", "urn:uuid:00000000-0000-4000-8000-000000000002",
           "urn:uuid:00000000-0000-4000-8000-000000000003")
    made = [policy_from_consent(consent_from_policy(p)) for p in onboarding_policies(patient_spid=SPID,
                                                                                     policy_set_ids=ids)]
    assert [(p.template, p.rule, p.subject_id) for p in made] == [
        (201, P + "access-level:full", SPID), (202, P + "access-level:normal", None),
        (203, P + "provide-level:normal", None)]
