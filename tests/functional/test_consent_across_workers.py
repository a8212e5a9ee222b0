"""Several gateway workers on the production pair (PostgreSQL + Redis): a revocation made through one
worker is enforced by another on the very next request, although both cache policies."""

import os

import orjson
import pytest
from starlette.testclient import TestClient

from conftest import HCP_GLN, SPID, Gateway, Tokens, fresh_postgres_url, make_settings
from consent.cache import RedisPolicyCache
from functional.helpers import document_ids
from gateway.composition import create_app
from gateway.first_start import prepare
from gateway.exchanges.search_pages import RedisSearchPages
from gateway.samples import pdf_document, provide_bundle
from gateway.wiring import build_runtime

pytestmark = pytest.mark.postgres


def redis_url() -> str:
    url = os.environ.get("EPR_TEST_REDIS_URL")
    if not url:
        pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
    return url


@pytest.fixture
def two_workers(tmp_path):
    database = fresh_postgres_url()
    settings = prepare(make_settings(tmp_path / "data", database, redis_url=redis_url(), workers=2)).settings
    workers = []
    for _ in range(2):
        runtime = build_runtime(settings)
        client = TestClient(create_app(runtime), base_url="https://testserver")
        workers.append(Gateway(client.__enter__(), runtime, Tokens(settings), tmp_path / "data"))
    yield workers
    for worker in workers:
        worker.client.__exit__(None, None, None)
        worker.runtime.close()


def test_both_workers_cache_policies_in_redis_mode(two_workers):
    assert [type(w.services.exchange.access.cache) for w in two_workers] == [RedisPolicyCache, RedisPolicyCache]


def test_revocation_through_one_worker_is_enforced_by_the_other_at_once(two_workers):
    first, second = two_workers
    first.register_patient(grant_hcp=None)
    grant_id = first.grant(SPID, HCP_GLN, "normal")
    entry_id = document_ids(first.provide(provide_bundle(spid=SPID, documents=[
        {"title": "Letter", "content": pdf_document("Letter", ["x"])}])).json())[0]
    # the second worker reads (and caches) the policies while the grant stands
    assert second.client.get(f"/fhir/Binary/{entry_id}", headers=second.as_hcp()).status_code == 200
    assert second.client.get(f"/fhir/Binary/{entry_id}", headers=second.as_hcp()).status_code == 200

    revoked = first.client.delete(f"/fhir/Consent/{grant_id}",
                                  headers=first.tokens.headers(first.tokens.patient()))

    assert revoked.status_code == 204
    assert second.client.get(f"/fhir/Binary/{entry_id}", headers=second.as_hcp()).status_code == 404
    assert second.find(headers=second.as_hcp()).json()["total"] == 0


def test_a_grant_through_one_worker_is_seen_by_the_other_at_once(two_workers):
    first, second = two_workers
    first.register_patient(grant_hcp=None)
    first.provide(provide_bundle(spid=SPID, author_role="TCU", documents=[
        {"title": "Letter", "content": pdf_document("L", ["x"])}]), headers=first.tokens.headers(first.tokens.tcu()))
    assert second.find(headers=second.as_hcp()).json()["total"] == 0

    first.grant(SPID, HCP_GLN, "normal")

    assert second.find(headers=second.as_hcp()).json()["total"] == 1


def test_a_document_provided_through_one_worker_is_found_by_the_other_at_once(two_workers):
    """Both workers remember ITI-67 pages; the provide bumps the patient's version in Redis."""
    first, second = two_workers
    assert type(second.services.exchange.pages) is RedisSearchPages
    first.register_patient()
    first.provide(provide_bundle(spid=SPID, documents=[{"title": "One", "content": pdf_document("One", ["x"])}]))
    assert second.find().json()["total"] == 1
    assert second.find().json()["total"] == 1  # now from the second worker's remembered page

    first.provide(provide_bundle(spid=SPID, documents=[{"title": "Two", "content": pdf_document("Two", ["y"])}]))

    assert second.find().json()["total"] == 2


def test_redis_down_fails_closed_with_503(two_workers, monkeypatch):
    first, second = two_workers
    first.register_patient()
    cache = second.services.exchange.access.cache
    monkeypatch.setattr(cache, "_redis", __import__("redis").Redis.from_url("redis://127.0.0.1:1/0",
                                                                              socket_connect_timeout=0.2))

    response = second.find(headers=second.as_hcp())

    assert response.status_code == 503
    assert response.json()["issue"][0]["code"] == "transient"
    assert orjson.loads(response.content)["resourceType"] == "OperationOutcome"
