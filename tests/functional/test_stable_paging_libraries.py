"""fhirpy's `fetch_all()` against the real server on loopback over TLS while documents arrive between its
page fetches: the signed cursor of each next link gives every document it started with exactly once.
A server of its own (the fixture of test_fhir_libraries, instantiated for this module): documents
provided here must not change what the other module counts."""

from __future__ import annotations

import httpx
import orjson

from functional.test_fhir_libraries import SPID_SEARCH, server  # noqa: F401  (the fixture, for this module)
from gateway.demo import DEMO_SPID, DEMO_VIEWS
from gateway.samples import pdf_document, provide_bundle


def test_fhirpy_fetch_all_while_documents_arrive_gets_each_document_once(server):  # noqa: F811
    from fhirpy import SyncFHIRClient

    provided: list[int] = []

    def provide_one() -> None:
        bundle = provide_bundle(spid=DEMO_SPID, documents=[{"title": "Arrived while paging",
                                                            "content": pdf_document("Arrived", ["x"])}])
        answer = httpx.post(server["base"], content=orjson.dumps(bundle), verify=server["ca"], timeout=30,
                            headers={"Authorization": f"Bearer {server['token']}",
                                     "Content-Type": "application/fhir+json"})
        assert answer.status_code == 200, answer.text
        provided.append(answer.status_code)

    class ProvidingBetweenPages(SyncFHIRClient):
        """After each page of the DocumentReference search, another document of the patient arrives."""

        def _do_request(self, method, path, *args, **kwargs):
            answer = super()._do_request(method, path, *args, **kwargs)
            if method == "get" and path.split("?")[0].rstrip("/").endswith("DocumentReference"):
                provide_one()
            return answer

    plain = SyncFHIRClient(server["base"], authorization=f"Bearer {server['token']}",
                           requests_config={"verify": server["ca"]})
    before = [d["id"] for d in plain.resources("DocumentReference").search(
        **{"patient.identifier": SPID_SEARCH}).fetch_all()]
    client = ProvidingBetweenPages(server["base"], authorization=f"Bearer {server['token']}",
                                   requests_config={"verify": server["ca"]})
    search = client.resources("DocumentReference").search(**{"patient.identifier": SPID_SEARCH})

    everything = [d["id"] for d in search.limit(1).fetch_all()]  # one per page: follows every next link

    assert len(before) == DEMO_VIEWS["HCP"].documents
    assert everything == before  # newest first, each once, none of those provided meanwhile
    assert len(provided) == len(before)  # a document arrived after every page
    after = plain.resources("DocumentReference").search(**{"patient.identifier": SPID_SEARCH}).count()
    assert after == len(before) + len(provided)
