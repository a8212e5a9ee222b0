"""Off-the-shelf FHIR clients against the real server on loopback over TLS (the demonstration data):
fhirpy (fetch_all, count, first, refresh, save of a Consent, Binary to_resource, SubmissionSet Lists) and fhirclient (prepare,
searches, Binary.read)."""

from __future__ import annotations

import base64
import json
import os
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fhir.resources.R4B.binary import Binary
from fhir.resources.R4B.consent import Consent
from fhir.resources.R4B.documentreference import DocumentReference

from gateway.demo import DEMO_SPID, DEMO_VIEWS
from gateway.pki import ensure_dev_pki

ROOT = Path(__file__).resolve().parents[2]
SPID_SEARCH = f"urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    base_dir = tmp_path_factory.mktemp("libraries")
    with __import__("socket").socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    ca = ensure_dev_pki(base_dir / "data" / "pki").ca_cert
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(base_dir / "home"),
           "EPR_DATA_DIR": str(base_dir / "data"), "EPR_PORT": str(port),
           "EPR_AUDIENCE": f"https://127.0.0.1:{port}/fhir"}
    process = subprocess.Popen([sys.executable, "-c", "from gateway.cli import main; main()", "serve"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=base_dir)
    tls = ssl.create_default_context(cafile=str(ca))
    deadline, ready = time.monotonic() + 60, False
    while not ready and time.monotonic() < deadline and process.poll() is None:
        try:
            ready = httpx.get(f"https://127.0.0.1:{port}/health/ready", verify=tls, timeout=2).status_code == 200
        except (httpx.HTTPError, OSError):
            time.sleep(0.2)
    minted = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", "token", "--role", "HCP",
                             "--gln", "7601000000002"], env=env, capture_output=True, text=True, timeout=60)
    patient = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", "token", "--role", "PAT",
                              "--spid", DEMO_SPID], env=env, capture_output=True, text=True, timeout=60)
    try:
        assert ready and minted.returncode == 0 and patient.returncode == 0, minted.stderr + patient.stderr
        yield {"base": f"https://127.0.0.1:{port}/fhir", "ca": str(ca), "token": minted.stdout.splitlines()[-1],
               "patient_token": patient.stdout.splitlines()[-1]}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:  # keep-alive connections of the clients hold the graceful stop
            process.kill()
            process.wait(timeout=15)


def test_fhirpy_fetch_all_count_first_refresh_and_binary(server):
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(server["base"], authorization=f"Bearer {server['token']}",
                            requests_config={"verify": server["ca"]})
    search = client.resources("DocumentReference").search(**{"patient.identifier": SPID_SEARCH})

    everything = search.limit(1).fetch_all()  # one per page: follows every next link
    count = search.count()
    first = search.first()
    seen = first.serialize()
    first.refresh()  # If-None-Match with its versionId: 304, the resource stays as it was
    binary = client.reference("Binary", first["content"][0]["attachment"]["url"].rsplit("/", 1)[1]).to_resource()
    raw = httpx.get(first["content"][0]["attachment"]["url"], headers={"Authorization": f"Bearer {server['token']}"},
                    verify=ssl.create_default_context(cafile=server["ca"]))

    assert len(everything) == count == DEMO_VIEWS["HCP"].documents
    assert len({d["id"] for d in everything}) == count
    DocumentReference.model_validate(first.serialize())
    assert first["id"] == everything[0]["id"] and first.serialize() == seen and first["meta"]["versionId"] == "1"
    # The searched resource carries the version and instant a read gives (issue 13), hence the 304 above.
    assert client.reference("DocumentReference", first["id"]).to_resource()["meta"] == first["meta"]
    assert "lastUpdated" in first["meta"]
    Binary.model_validate(binary.serialize())
    assert (binary.resource_type, binary["contentType"], binary["securityContext"]["reference"]) == (
        "Binary", "application/pdf", f"DocumentReference/{first['id']}")
    assert raw.headers["content-type"] == "application/pdf" and base64.b64decode(binary["data"]) == raw.content


def test_fhirpy_searches_and_reads_the_submissionset_lists(server):
    """ITI-66 through an off-the-shelf client: the demonstration's one SubmissionSet, with the documents each
    reader may see; each entry resolves to the DocumentReference the same reader reads."""
    from fhir.resources.R4B.list import List as FhirList
    from fhirpy import SyncFHIRClient

    views = {}
    for who, token in (("HCP", server["token"]), ("PAT", server["patient_token"])):
        client = SyncFHIRClient(server["base"], authorization=f"Bearer {token}", requests_config={"verify": server["ca"]})
        search = client.resources("List").search(**{"patient.identifier": SPID_SEARCH, "code": "submissionset"})
        lists = search.limit(1).fetch_all()
        [one] = lists
        FhirList.model_validate(one.serialize())
        read = client.reference("List", one["id"]).to_resource()
        documents = [client.reference("DocumentReference", e["item"]["reference"].split("/")[1]).to_resource()
                     for e in read["entry"]]
        views[who] = (search.count(), len(read["entry"]), {d["resourceType"] for d in documents},
                      read.serialize() == one.serialize())

    assert views == {"HCP": (1, DEMO_VIEWS["HCP"].documents, {"DocumentReference"}, True),
                     "PAT": (1, DEMO_VIEWS["PAT"].documents, {"DocumentReference"}, True)}


def test_fhirpy_saves_a_consent_and_refreshes_it_by_version(server):
    from fhirpy import SyncFHIRClient

    client = SyncFHIRClient(server["base"], authorization=f"Bearer {server['patient_token']}",
                            requests_config={"verify": server["ca"]})
    consents = client.resources("Consent").search(**{"patient:identifier": SPID_SEARCH}).fetch()
    grant = next(c for c in consents if any(i["value"] == "301" for i in c["identifier"]))
    version = int(grant["meta"]["versionId"])
    same = client.reference("Consent", grant["id"]).to_resource()  # GET Consent/{id}
    assert same["meta"] == grant["meta"]  # a searched resource carries what a read gives (issue 13)

    grant.save()  # PUT Consent/{id}: a new version of the patient's grant
    Consent.model_validate(grant.serialize())
    assert grant["meta"]["versionId"] == str(version + 1)
    same.refresh()  # its version is stale now: the server answers 200 with the stored one
    assert same["meta"]["versionId"] == str(version + 1) and same.serialize() == grant.serialize()
    grant.refresh()  # current: 304, nothing changes
    assert grant.serialize() == same.serialize()
    searched = client.resources("Consent").search(**{"patient:identifier": SPID_SEARCH}).fetch()
    assert next(c for c in searched if c["id"] == grant["id"])["meta"] == grant["meta"]  # version 2 searched too
    # A writer holding the old version cannot overwrite the new one (412), and nothing changes.
    stale = httpx.put(f"{server['base']}/Consent/{grant['id']}", content=json.dumps(grant.serialize()),
                      headers={"Authorization": f"Bearer {server['patient_token']}", "If-Match": f'W/"{version}"',
                               "Content-Type": "application/fhir+json"},
                      verify=ssl.create_default_context(cafile=server["ca"]))
    assert stale.status_code == 412 and stale.json()["resourceType"] == "OperationOutcome"
    assert client.reference("Consent", grant["id"]).to_resource()["meta"]["versionId"] == str(version + 1)


def test_fhirclient_prepare_search_and_binary_read(server):
    from fhirclient import client as fhirclient_client
    from fhirclient.models.binary import Binary as FcBinary
    from fhirclient.models.documentreference import DocumentReference as FcDocumentReference

    smart = fhirclient_client.FHIRClient(settings={"app_id": "epr-test", "api_base": server["base"] + "/"})
    smart.server.session.verify = server["ca"]
    smart.server.session.trust_env = False  # REQUESTS_CA_BUNDLE would replace the CA given here
    smart.server.session.headers["Authorization"] = f"Bearer {server['token']}"
    smart.prepare()  # reads the CapabilityStatement

    found = FcDocumentReference.where(struct={"patient.identifier": SPID_SEARCH}).perform_resources(smart.server)

    assert smart.ready or smart.server.capabilityStatement is not None
    assert len(found) == DEMO_VIEWS["HCP"].documents
    assert {d.status for d in found} == {"current"}
    raw = smart.server.session.get(found[0].content[0].attachment.url)
    assert raw.status_code == 200 and raw.content.startswith(b"%PDF")
    binary = FcBinary.read(found[0].id, smart.server)  # Accept: application/fhir+json → the Binary resource
    Binary.model_validate(binary.as_json())
    assert (binary.contentType, binary.securityContext.reference) == ("application/pdf",
                                                                      f"DocumentReference/{found[0].id}")
    assert base64.b64decode(binary.data) == raw.content
    assert base64.b64encode(raw.content)
