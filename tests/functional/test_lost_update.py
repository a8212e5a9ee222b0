"""No lost update under concurrency (issue 13): two clients read version n of the same resource, then
both PUT with `If-Match: W/"n"` at the same moment, over TCP against a real uvicorn server. Exactly one
is stored (200) and the other is answered 412 with an OperationOutcome; the stored resource is the
winner's, as version n+1. For a Consent (PPQ PUT) and for a CH:MHD-1 metadata update, on SQLite and on
PostgreSQL. Several rounds, so the two writes meet inside the store more than once."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager

import httpx
import orjson
import pytest
import uvicorn
from fhir.resources.R4B.operationoutcome import OperationOutcome

from conftest import HCP_GLN, SPID, grant_consent
from functional.helpers import document_ids
from gateway.samples import pdf_document, provide_bundle

ROUNDS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def served(gateway):
    """The gateway's app (already started by the fixture's client) behind uvicorn on a TCP port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(gateway.client.app, host="127.0.0.1", port=port, log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def race(base: str, path: str, headers: dict, bodies: list[dict], version: str) -> list[httpx.Response]:
    """PUT each body from its own client and thread, all released together by a barrier."""
    barrier = threading.Barrier(len(bodies))
    answers: list[httpx.Response | None] = [None] * len(bodies)

    def client(index: int) -> None:
        with httpx.Client(base_url=base, timeout=30) as http:
            http.get("/fhir/metadata")  # connected before the barrier: the PUTs leave together
            barrier.wait()
            answers[index] = http.put(path, content=orjson.dumps(bodies[index]),
                                      headers={**headers, "If-Match": f'W/"{version}"'})

    threads = [threading.Thread(target=client, args=(i,)) for i in range(len(bodies))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers  # type: ignore[return-value]


def one_winner(answers: list[httpx.Response], version: int) -> int:
    """The index of the single stored write; the other is a 412 OperationOutcome."""
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [200, 412], [a.text for a in answers]
    loser = next(a for a in answers if a.status_code == 412)
    outcome = OperationOutcome.model_validate(loser.json())
    assert outcome.issue[0].code == "conflict"
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
    assert answers[winner].json()["meta"]["versionId"] == str(version + 1)
    assert answers[winner].headers["etag"] == f'W/"{version + 1}"'
    return winner


def test_two_consent_updates_of_one_version_store_exactly_one(gateway):
    gateway.register_patient()
    patient = gateway.tokens.headers(gateway.tokens.patient())
    consent = grant_consent(spid=SPID, gln=HCP_GLN, level="normal")
    created = gateway.client.post("/fhir/Consent", content=orjson.dumps(consent), headers=patient)
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    path = f"/fhir/Consent/{cid}"

    with served(gateway) as base:
        for round_ in range(ROUNDS):
            read = gateway.client.get(path, headers=patient).json()
            version = int(read["meta"]["versionId"])
            bodies = [grant_consent(spid=SPID, gln=HCP_GLN, level="normal", end=f"20{40 + round_}-0{k + 1}-01")
                      for k in range(2)]
            for body in bodies:
                body["identifier"] = consent["identifier"]
            answers = race(base, path, patient, bodies, str(version))
            winner = one_winner(answers, version)
            stored = gateway.client.get(path, headers=patient).json()
            assert stored["meta"]["versionId"] == str(version + 1)
            assert stored["provision"]["period"]["end"].startswith(bodies[winner]["provision"]["period"]["end"])


def test_two_metadata_updates_of_one_version_store_exactly_one(gateway):
    gateway.register_patient(grant_hcp="restricted")
    bundle = provide_bundle(spid=SPID, documents=[{"title": "Letter", "type_code": "373942005",
                                                   "content": pdf_document("Letter", ["a"])}])
    letter = document_ids(gateway.provide(bundle).json())[0]
    hcp = gateway.as_hcp()
    path = f"/fhir/DocumentReference/{letter}"

    with served(gateway) as base:
        for round_ in range(ROUNDS):
            read = gateway.client.get(path, headers=hcp).json()
            version = int(read["meta"]["versionId"])
            bodies = [read | {"description": f"round {round_}, client {k}"} for k in range(2)]
            answers = race(base, path, hcp, bodies, str(version))
            winner = one_winner(answers, version)
            stored = gateway.client.get(path, headers=hcp).json()
            assert (stored["meta"]["versionId"], stored["description"]) == (
                str(version + 1), bodies[winner]["description"])
    history = gateway.services.metadata.versions.history(letter)
    assert [v.version for v in history] == list(range(1, ROUNDS + 2))
