"""Item 2 of the hardening issue: a merge never widens access. A merged record is decided per
document under its own patient's policies plus every restriction of the patients merged with it
(deny-overrides: an exclusion list of either wins, the strictest provide level counts); a grant
counts only for the documents of the patient who gave it, and each patient keeps access to their
own documents. Tested for every template (201-304) written by either side of a merge, before the
merge, while merged (searching under both SPIDs) and after the unmerge.

Before the fix a merged record was decided under the survivor's policies alone: an HCP blocked by
the retired patient read its restricted document (404 before, 200 after) and the retired patient's
own token lost access to it."""

import uuid
from datetime import date

import orjson
import pytest

from conftest import OTHER_SPID, POLICY_ADMIN, SPID
from consent import policies as P
from consent.policies import Policy
from functional.helpers import document_ids
from gateway.exchanges.policies import PolicyChange
from gateway.samples import pdf_document, provide_bundle

RETIRED, SURVIVING = "retired", "surviving"
SPIDS = {RETIRED: OTHER_SPID, SURVIVING: SPID}
LEVELS = ("normal", "restricted", "secret")
HCP = "7601000000026"  # granted nothing unless a scenario says so
GROUP = "urn:oid:2.16.756.5.30.1.999.77"
REP = "rep-4711"
END = date(2099, 12, 31)
BOTH = (RETIRED, SURVIVING)


def other(side: str) -> str:
    return SURVIVING if side == RETIRED else RETIRED


def policy(side: str, template: int, rule: str, subject: str | None, end: date | None = None) -> Policy:
    return Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=template, patient_spid=SPIDS[side],
                  rule=rule, subject_id=subject, end=end)


def write(gateway, *changes: PolicyChange) -> None:
    gateway.services.policies.apply(principal=POLICY_ADMIN, changes=list(changes))


def post(p: Policy) -> PolicyChange:
    return PolicyChange("POST", p.policy_set_id, p)


def delete_template(gateway, side: str, template: int) -> None:
    pid = gateway.services.exchange.patients.pid_for_spid(SPIDS[side])
    existing = [p for p in gateway.services.exchange.access.store.policies_for(pid) if p.template == template]
    write(gateway, *[PolicyChange("DELETE", p.policy_set_id, None) for p in existing])


# Each scenario: the policy written by `side`, the principal's token, and the levels of each side's
# documents the principal sees before / while / after the merge. `bound`: the token names one patient.
def scenario(gateway, name: str, side: str):
    mint = gateway.tokens.mint
    if name == "201 patient's own access":
        token = gateway.tokens.patient(SPIDS[side])
        return token, True, {side: set(LEVELS), other(side): set()}, None
    if name == "202 emergency access off":
        delete_template(gateway, side, 202)  # the other keeps the legal default (normal)
        token = gateway.tokens.hcp(gln=HCP, purpose="EMER")
        return token, False, {side: set(), other(side): {"normal"}}, None
    if name == "301 grant":
        write(gateway, post(policy(side, 301, P.RESTRICTED, HCP)))
        return gateway.tokens.hcp(gln=HCP), False, {side: {"normal", "restricted"}, other(side): set()}, None
    if name == "301 exclusion list":
        write(gateway, post(policy(side, 301, P.EXCLUSION_LIST, HCP)),
              post(policy(other(side), 301, P.RESTRICTED, HCP)))
        merged = {side: set(), other(side): set()}  # the block wins over the other's grant
        return gateway.tokens.hcp(gln=HCP), False, {side: set(), other(side): {"normal", "restricted"}}, merged
    if name == "302 group grant":
        write(gateway, post(policy(side, 302, P.RESTRICTED, GROUP, end=END)))
        token = gateway.tokens.hcp(gln=HCP, groups=(GROUP,))
        return token, False, {side: {"normal", "restricted"}, other(side): set()}, None
    if name == "303 representative":
        write(gateway, post(policy(side, 303, P.FULL, REP)))
        token = mint(role="REP", user_id=REP, spid=SPIDS[side], name="Representative")
        return token, True, {side: set(LEVELS), other(side): set()}, None
    if name == "304 delegation right":
        write(gateway, post(policy(side, 304, P.DELEGATION_RESTRICTED, HCP, end=END)))
        return gateway.tokens.hcp(gln=HCP), False, {side: {"normal", "restricted"}, other(side): set()}, None
    raise AssertionError(name)


SCENARIOS = ("201 patient's own access", "202 emergency access off", "301 grant", "301 exclusion list",
             "302 group grant", "303 representative", "304 delegation right")


@pytest.fixture
def two_patients(sqlite_gateway):
    """Two patients without grants, each with a normal, a restricted and a secret document of their own."""
    gateway = sqlite_gateway
    pids, docs = {}, {}
    for side, local_id, given in ((SURVIVING, "L-1", "Anna"), (RETIRED, "L-2", "Berta")):
        pids[side] = gateway.register_patient(spid=SPIDS[side], local_id=local_id, given=given, grant_hcp=None)["id"]
        own = gateway.tokens.headers(gateway.tokens.patient(SPIDS[side]))
        for level in LEVELS:
            response = gateway.provide(provide_bundle(spid=SPIDS[side], author_role="PAT", documents=[
                {"title": f"{side} {level}", "confidentiality": level,
                 "content": pdf_document(f"{side} {level}", [level])}]), own)
            assert response.status_code == 200, response.text
            docs[document_ids(response.json())[0]] = (side, level)
    return gateway, pids, docs


def link(gateway, pids, operation: str) -> None:
    body = orjson.dumps({"resourceType": "Parameters", "parameter": [
        {"name": "source-patient", "valueReference": {"reference": f"Patient/{pids[RETIRED]}"}},
        {"name": "target-patient", "valueReference": {"reference": f"Patient/{pids[SURVIVING]}"}}]})
    admin = gateway.tokens.headers(gateway.tokens.mint(role="DADM", user_id="dadm-1", name="Admin"))
    response = gateway.client.post(f"/fhir/Patient/${operation}", content=body, headers=admin)
    assert response.status_code == 200, response.text


def seen(gateway, docs, headers, spids) -> dict[str, set[str]]:
    """What the principal finds (ITI-67 under each of `spids`) and reads by id, as {side: levels};
    both must agree."""
    found = set()
    for spid in spids:
        response = gateway.find(spid, headers=headers, _count="50")
        assert response.status_code == 200, response.text
        found |= {e["resource"]["id"] for e in response.json().get("entry", [])}
    read = {d for d in docs if gateway.client.get(f"/fhir/DocumentReference/{d}", headers=headers).status_code == 200}
    assert found == read
    return {side: {docs[d][1] for d in read if docs[d][0] == side} for side in BOTH}


@pytest.mark.parametrize("side", BOTH)
@pytest.mark.parametrize("name", SCENARIOS)
def test_a_merge_never_widens_access(two_patients, name, side):
    gateway, pids, docs = two_patients
    token, bound, apart, merged = scenario(gateway, name, side)
    headers = gateway.tokens.headers(token)
    # A token bound to one patient searches under that patient's SPID; the others under both.
    spids = [SPIDS[side]] if bound else [SPID, OTHER_SPID]

    before = seen(gateway, docs, headers, spids)
    link(gateway, pids, "merge")
    during = seen(gateway, docs, headers, spids)
    link(gateway, pids, "unmerge")
    after = seen(gateway, docs, headers, spids)

    assert (before, during, after) == (apart, merged or apart, apart)


@pytest.mark.parametrize("side", BOTH)
def test_203_the_strictest_provide_level_of_a_merged_record_counts(two_patients, side):
    gateway, pids, docs = two_patients
    delete_template(gateway, side, 203)
    write(gateway, post(policy(side, 203, P.PROVIDE_RESTRICTED, None)))
    uploader = gateway.tokens.headers(gateway.tokens.hcp(gln=HCP))

    def stored_levels() -> dict[str, str]:
        levels = {}
        for name, spid in SPIDS.items():
            response = gateway.provide(provide_bundle(spid=spid, documents=[
                {"title": "Upload", "content": pdf_document("Upload", [str(uuid.uuid4())])}]), uploader)
            assert response.status_code == 200, response.text
            entry = gateway.services.exchange.documents.get_entry(document_ids(response.json())[0])
            levels[name] = entry.confidentiality_level
        return levels

    apart = {side: "restricted", other(side): "normal"}
    assert stored_levels() == apart
    link(gateway, pids, "merge")
    assert stored_levels() == {RETIRED: "restricted", SURVIVING: "restricted"}
    link(gateway, pids, "unmerge")
    assert stored_levels() == apart


def test_the_reviewed_case_blocked_hcp_and_the_retired_patients_own_token(two_patients):
    """A (retired) blocks HCP4, B (surviving) grants HCP4 restricted; after the merge HCP4 still
    cannot read A's restricted document, and A's own token still can."""
    gateway, pids, docs = two_patients
    write(gateway, post(policy(RETIRED, 301, P.EXCLUSION_LIST, HCP)), post(policy(SURVIVING, 301, P.RESTRICTED, HCP)))
    a_restricted = next(d for d, owner in docs.items() if owner == (RETIRED, "restricted"))
    hcp4 = gateway.tokens.headers(gateway.tokens.hcp(gln=HCP))
    own = gateway.tokens.headers(gateway.tokens.patient(OTHER_SPID))

    link(gateway, pids, "merge")

    assert gateway.client.get(f"/fhir/DocumentReference/{a_restricted}", headers=hcp4).status_code == 404
    assert gateway.client.get(f"/fhir/Binary/{a_restricted}", headers=hcp4).status_code == 404
    assert gateway.client.get(f"/fhir/Binary/{a_restricted}", headers=own).status_code == 200
    assert {e["resource"]["id"] for e in gateway.find(OTHER_SPID, headers=own).json()["entry"]} == {
        d for d, (owner, _) in docs.items() if owner == RETIRED}
