"""Item 2 across workers (PostgreSQL + Redis): a merge or unmerge made through one worker reaches the
other's remembered SPID → MPI-PID links and merged records on its very next request (a Redis
version counter, like the policies'), so the merge rule holds in every worker."""

import pytest
import redis

from adapters.cara.store.link_versions import RedisLinkVersion
from conftest import OTHER_SPID, SPID
from functional.helpers import document_ids
from functional.test_consent_across_workers import two_workers  # noqa: F401 - the fixture
from functional.test_merge_access import HCP, RETIRED, SURVIVING, SPIDS, link, policy, post, write
from consent import policies as P
from gateway.samples import pdf_document, provide_bundle

pytestmark = pytest.mark.postgres


def prepare(first) -> tuple[dict, dict]:
    pids, docs = {}, {}
    for side, local_id, given in ((SURVIVING, "L-1", "Anna"), (RETIRED, "L-2", "Berta")):
        pids[side] = first.register_patient(spid=SPIDS[side], local_id=local_id, given=given, grant_hcp=None)["id"]
        own = first.tokens.headers(first.tokens.patient(SPIDS[side]))
        for level in ("normal", "restricted"):
            response = first.provide(provide_bundle(spid=SPIDS[side], author_role="PAT", documents=[
                {"title": f"{side} {level}", "confidentiality": level,
                 "content": pdf_document(f"{side} {level}", [level])}]), own)
            docs[document_ids(response.json())[0]] = side
    return pids, docs


def found(worker, spid: str) -> set[str]:
    response = worker.find(spid, headers=worker.tokens.headers(worker.tokens.hcp(gln=HCP)))
    assert response.status_code == 200, response.text
    return {e["resource"]["id"] for e in response.json().get("entry", [])}


def test_both_workers_follow_the_links_in_redis(two_workers):
    assert [type(w.services.exchange.patients.links.version) for w in two_workers] == [RedisLinkVersion, RedisLinkVersion]


def test_a_merge_and_unmerge_through_one_worker_reach_the_others_spid_cache(two_workers):
    first, second = two_workers
    pids, docs = prepare(first)
    write(first, post(policy(RETIRED, 301, P.RESTRICTED, HCP)), post(policy(SURVIVING, 301, P.RESTRICTED, HCP)))
    of = {side: {d for d, s in docs.items() if s == side} for side in SPIDS}
    assert (found(second, OTHER_SPID), found(second, SPID)) == (of[RETIRED], of[SURVIVING])  # now remembered

    link(first, pids, "merge")
    assert (found(second, OTHER_SPID), found(second, SPID)) == (set(docs), set(docs))

    link(first, pids, "unmerge")
    assert (found(second, OTHER_SPID), found(second, SPID)) == (of[RETIRED], of[SURVIVING])


def test_a_block_of_the_retired_patient_holds_in_the_other_worker_at_once(two_workers):
    first, second = two_workers
    pids, docs = prepare(first)
    write(first, post(policy(RETIRED, 301, P.EXCLUSION_LIST, HCP)), post(policy(SURVIVING, 301, P.RESTRICTED, HCP)))
    surviving_docs = {d for d, s in docs.items() if s == SURVIVING}
    hcp = second.tokens.headers(second.tokens.hcp(gln=HCP))
    assert found(second, SPID) == surviving_docs

    link(first, pids, "merge")

    assert found(second, SPID) == set()
    assert {second.client.get(f"/fhir/Binary/{d}", headers=hcp).status_code for d in docs} == {404}


def test_the_links_fail_closed_when_redis_cannot_be_asked(two_workers, monkeypatch):
    first, second = two_workers
    prepare(first)
    links = second.services.exchange.patients.links.version
    monkeypatch.setattr(links, "_redis", redis.Redis.from_url("redis://127.0.0.1:1/0", socket_connect_timeout=0.2))

    response = second.find(SPID, headers=second.tokens.headers(second.tokens.patient(SPID)))

    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
