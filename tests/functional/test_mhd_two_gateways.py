"""Two gateways on loopback (issue 24 item 7): "Valais" delivers into "cara" over MHD — two `serve`
processes, real mutual TLS both ways, no stub. Valais's transport (`MhdDocumentSource`) gets a TCU token
by client credentials from Valais's development token endpoint (its client certificate is the
credential) and provides to cara, which trusts Valais's issuer (a trusted-issuers file naming it and its
JWKS) and requires a client certificate for technical users. What shows: every document delivered, found
by ITI-67 on cara and byte for byte by ITI-68; a re-sent submission is already delivered, nothing twice;
a replacement names its original as cara answered it; a patient cara does not know waits, then goes;
cara killed mid-way is a transport failure, restarted the same submission is delivered."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import httpx
import orjson
import pytest

from adapters.cara.fhir_mapping import submission_from_bundle
from adapters.community.config import parse_communities
from adapters.community.ebrim import OutgoingDocument, OutgoingRelation
from adapters.community.mhd import MhdDocumentSource
from adapters.community.outcomes import AlreadyDelivered, Delivered, TransportFailure, WaitingPatient
from adapters.community.source import ProvideRequest
from conftest import HCP_GLN, LOCAL_SYSTEM, OTHER_SPID, SPID
from functional.helpers import document_ids
from functional.test_tls_server import Server, free_port
from gateway.auth.dev_issuer import JWKS_FILE, mint_token
from gateway.pki import ensure_dev_pki, issue_client_certificate
from gateway.samples import patient_feed, pdf_document, provide_bundle

SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|"
SENT_AT = dt.datetime(2026, 3, 2, 9, 30, tzinfo=dt.UTC)


class Peers:
    """Valais and cara, each a `serve` process with its own data directory, CA and port."""

    def __init__(self, root: Path, **valais_env):
        self.root = root
        self.valais_dir, self.cara_dir = root / "valais", root / "cara"
        valais_pki, cara_pki = ensure_dev_pki(self.valais_dir / "pki"), ensure_dev_pki(self.cara_dir / "pki")
        self.valais_port, self.cara_port = free_port(), free_port()
        self.valais_issuer = f"https://127.0.0.1:{self.valais_port}/dev-issuer"
        self.cara_fhir = f"https://127.0.0.1:{self.cara_port}/fhir"
        # Valais's deliverer: a client certificate of Valais's CA, registered with Valais's token endpoint
        # as the technical user acting for the responsible professional, for cara only.
        self.client_cert, self.client_key = issue_client_certificate(valais_pki, "valais-deliverer", root / "deliverer")
        clients = root / "valais-token-clients.json"
        clients.write_text(json.dumps({"clients": [{
            "client_id": "valais-deliverer", "certificate_cn": "valais-deliverer", "user_id": "valais-deliverer",
            "name": "Valais delivery to cara", "principal_gln": HCP_GLN, "principal_name": "Dr. Luc Favre",
            "resources": [self.cara_fhir]}]}))
        both_cas = root / "valais-and-cara-ca.pem"
        both_cas.write_bytes(valais_pki.ca_cert.read_bytes() + cara_pki.ca_cert.read_bytes())
        self.trust = both_cas
        # Valais's communities file (used when Valais delivers itself: test_mhd_delivery_through_the_outbox).
        self.communities = root / "valais-communities.json"
        self.communities.write_text(json.dumps(self.community_file()))
        # Each its own MLLP port (serve always listens for HL7 v2): not the default another gateway may hold.
        self.valais_env = {"EPR_CLIENT_CA": str(valais_pki.ca_cert), "EPR_DEV_TOKEN_CLIENTS": str(clients),
                           "EPR_MLLP_PORT": str(free_port()), **valais_env}
        self.valais = Server(self.valais_dir, self.valais_port, **self.valais_env)
        trusted = root / "cara-trusted-issuers.json"
        trusted.write_text(json.dumps({"issuers": [{"issuer": self.valais_issuer,
                                                    "jwks_file": str(self.valais_dir / "auth" / JWKS_FILE)}]}))
        self.cara_env = {"EPR_TRUSTED_ISSUERS": str(trusted), "EPR_CLIENT_CA": str(both_cas),
                         "EPR_REQUIRE_MTLS_FOR": "TCU", "EPR_MLLP_PORT": str(free_port())}
        self.cara = Server(self.cara_dir, self.cara_port, **self.cara_env)

    def kill_cara(self) -> None:
        """Cara stops dead (no graceful end: its connections, Valais's pooled one among them, just break)."""
        self.cara.process.kill()
        self.cara.process.wait(timeout=20)

    def restart_cara(self) -> None:
        self.cara = Server(self.cara_dir, self.cara_port, **self.cara_env)

    def community_file(self) -> list:
        return [{"id": "cara-mhd", "mhd_url": self.cara_fhir, "token_url": f"{self.valais_issuer}/token",
                 "principal_gln": HCP_GLN, "principal_name": "Dr. Luc Favre",
                 "tls": {"ca": str(self.trust), "client_cert": str(self.client_cert),
                         "client_key": str(self.client_key)}, "client_id": "valais-deliverer",
                 "source_id": "2.16.756.5.30.1.145.20.1", "timeout_seconds": 20}]

    # -- tokens for the test's own requests (cara trusts Valais's issuer for every role) ----------------
    def token(self, audience: str, **claims) -> str:
        return mint_token(data_dir=self.valais_dir, issuer_url=self.valais_issuer, audience=audience, **claims)

    def hcp(self, audience: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(audience, role='HCP', gln=HCP_GLN, name='Dr. Luc Favre')}",
                "Content-Type": "application/fhir+json"}

    def patient(self, spid: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(self.cara_fhir, role='PAT', spid=spid, name='Anna Muster')}"}

    def patient_at(self, server: Server, spid: str) -> dict[str, str]:
        token = self.token(f"{server.base}/fhir", role="PAT", spid=spid, name="Anna Muster")
        return {"Authorization": f"Bearer {token}"}

    def client(self, server: Server) -> httpx.Client:
        return httpx.Client(verify=server.client_context(with_certificate=True), timeout=20, base_url=server.base)

    def feed(self, server: Server, spid: str, local_id: str) -> None:
        body = patient_feed(spid=spid, local_system=LOCAL_SYSTEM, local_id=local_id, family="Muster", given="Anna",
                            birth_date="1980-05-17", gender="female")
        with self.client(server) as client:
            answer = client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local_id}", content=orjson.dumps(body),
                                headers=self.hcp(f"{server.base}/fhir"))
        assert answer.status_code in (200, 201), answer.text

    def stop(self) -> None:
        for server in (self.valais, self.cara):
            if server.process.poll() is None:
                server.stop()


@pytest.fixture(scope="module")
def peers(tmp_path_factory):
    running = Peers(tmp_path_factory.mktemp("two-gateways"))
    running.feed(running.valais, SPID, "L-1")
    running.feed(running.valais, OTHER_SPID, "L-2")
    running.feed(running.cara, SPID, "C-1")  # cara knows the first patient only, for now
    yield running
    running.stop()


@pytest.fixture(scope="module")
def transport(peers):
    (community,) = parse_communities(peers.community_file(), base=peers.trust.parent)
    source = MhdDocumentSource(community)
    yield source
    source.close()


class Submission:
    """A submission as it entered Valais (ITI-65) and as the outbox would give it to the transport: the
    record's model, with the stable ids the gateway assigned (one submission set uniqueId and entryUUID, one
    entryUUID per document), the same on every attempt."""

    def __init__(self, peers: Peers, spid: str, *titles: str, replaces: tuple[str, str, str] | None = None):
        self.contents = [pdf_document(title, [f"{title} for {spid}", uuid.uuid4().hex]) for title in titles]
        valais_original = {"replaces": replaces[0]} if replaces else {}
        bundle = provide_bundle(spid=spid, documents=[{"title": t, "content": c, **valais_original}
                                                      for t, c in zip(titles, self.contents, strict=True)])
        with peers.client(peers.valais) as client:
            answer = client.post("/fhir", content=orjson.dumps(bundle), headers=peers.hcp(f"{peers.valais.base}/fhir"))
        assert answer.status_code == 200, answer.text
        self.valais_ids = document_ids(answer.json())
        for entry in bundle["entry"]:  # what Valais stored names its original by Valais's id; cara's differs
            entry["resource"].pop("relatesTo", None)
        model = submission_from_bundle(bundle)
        self.unique_ids = [d.entry.unique_id for d in model.documents]
        self.entry_uuids = [f"urn:uuid:{uuid.uuid4()}" for _ in model.documents]
        relations = (OutgoingRelation("replaces", replaces[1], replaces[2]),) if replaces else ()
        self.request = ProvideRequest(
            spid=spid, submission_set=model.submission_set, submission_set_unique_id=f"2.25.{uuid.uuid4().int}",
            submission_set_entry_uuid=f"urn:uuid:{uuid.uuid4()}",
            documents=tuple(OutgoingDocument(d, e, relations) for d, e in zip(model.documents, self.entry_uuids,
                                                                              strict=True)),
            confidentiality="normal", submission_time=SENT_AT)


def found_on_cara(peers: Peers, spid: str) -> dict[str, dict]:
    """Every DocumentReference cara holds for the patient (current and superseded), by uniqueId; a uniqueId
    twice fails here."""
    with peers.client(peers.cara) as client:
        answer = client.get("/fhir/DocumentReference", params={"patient.identifier": SEARCH + spid,
                                                                "status": "current,superseded"},
                            headers=peers.patient(spid))
    assert answer.status_code == 200, answer.text
    resources = [e["resource"] for e in answer.json().get("entry", [])]
    by_unique_id = {r["masterIdentifier"]["value"]: r for r in resources}
    assert len(by_unique_id) == len(resources) == answer.json()["total"]
    return by_unique_id


def retrieved_from_cara(peers: Peers, spid: str, resource: dict) -> bytes:
    with peers.client(peers.cara) as client:
        answer = client.get(resource["content"][0]["attachment"]["url"], headers=peers.patient(spid))
    assert answer.status_code == 200, answer.text
    return answer.content


def test_every_document_is_delivered_found_and_retrieved_byte_for_byte_and_nothing_twice(peers, transport):
    letters = Submission(peers, SPID, "Discharge letter", "Lab report")
    imaging = Submission(peers, SPID, "Imaging report")

    first, second = transport.provide(letters.request), transport.provide(imaging.request)
    resent = transport.provide(letters.request)  # the earlier answer "lost": the same submission again

    assert isinstance(first.outcome, Delivered) and isinstance(second.outcome, Delivered)
    assert isinstance(resent.outcome, AlreadyDelivered)
    assert resent.outcome.locations == first.outcome.locations
    held = found_on_cara(peers, SPID)
    for sent in (letters, imaging):
        for unique_id, entry_uuid, content in zip(sent.unique_ids, sent.entry_uuids, sent.contents, strict=True):
            resource = held[unique_id]
            assert resource["identifier"] == [{"use": "official", "system": "urn:ietf:rfc:3986", "value": entry_uuid}]
            assert resource["status"] == "current"
            assert resource["extension"][0]["valueCoding"]["code"] == "TCU"  # provided by Valais's technical user
            assert retrieved_from_cara(peers, SPID, resource) == content
    locations = dict(first.outcome.locations + second.outcome.locations)
    assert {uuid_: f"DocumentReference/{held[u]['id']}" for s in (letters, imaging)
            for u, uuid_ in zip(s.unique_ids, s.entry_uuids, strict=True)} == locations
    assert first.attempt.entry_uuids == tuple(letters.entry_uuids)


def test_a_replacement_names_its_original_as_cara_answered_it(peers, transport):
    original = Submission(peers, SPID, "Operation report")
    delivered = transport.provide(original.request)
    (entry_uuid, reference), = delivered.outcome.locations
    correction = Submission(peers, SPID, "Operation report (corrected)",
                            replaces=(original.valais_ids[0], entry_uuid, reference))

    replaced = transport.provide(correction.request)

    assert replaced.kind == "delivered", replaced.outcome
    held = found_on_cara(peers, SPID)
    old, new = held[original.unique_ids[0]], held[correction.unique_ids[0]]
    assert (old["status"], new["status"]) == ("superseded", "current")
    assert new["relatesTo"] == [{"code": "replaces", "target": {"reference": reference}}]
    assert retrieved_from_cara(peers, SPID, new) == correction.contents[0]


def test_a_patient_cara_does_not_know_waits_then_is_delivered(peers, transport):
    waiting = Submission(peers, OTHER_SPID, "Referral")

    before = transport.provide(waiting.request)
    peers.feed(peers.cara, OTHER_SPID, "C-2")
    after = transport.provide(waiting.request)

    assert isinstance(before.outcome, WaitingPatient)
    assert before.outcome.text.startswith("the recipient does not know the patient (")
    assert isinstance(after.outcome, Delivered)
    held = found_on_cara(peers, OTHER_SPID)
    assert list(held) == waiting.unique_ids
    assert retrieved_from_cara(peers, OTHER_SPID, held[waiting.unique_ids[0]]) == waiting.contents[0]


def test_cara_killed_mid_way_is_a_transport_failure_then_the_same_submission_is_delivered(peers, transport):
    pending = Submission(peers, SPID, "Consultation note")
    peers.kill_cara()

    while_down = [transport.provide(pending.request) for _ in range(2)]
    peers.restart_cara()
    after = transport.provide(pending.request)
    again = transport.provide(pending.request)

    assert [type(a.outcome) for a in while_down] == [TransportFailure, TransportFailure]
    assert all(a.outcome.text.startswith(f"ITI-65 {peers.cara_fhir}: ") for a in while_down)
    assert "ConnectError" in while_down[-1].outcome.text  # the pooled connection broke first, then no one listens
    assert isinstance(after.outcome, Delivered) and isinstance(again.outcome, AlreadyDelivered)
    assert after.attempt.submission_set_unique_id == while_down[0].attempt.submission_set_unique_id
    held = found_on_cara(peers, SPID)
    assert retrieved_from_cara(peers, SPID, held[pending.unique_ids[0]]) == pending.contents[0]


def test_cara_records_each_document_once_as_created_by_valais_technical_user_with_one_token(peers, transport):
    letter = Submission(peers, SPID, "Letter to the family doctor")
    assert transport.provide(letter.request).kind == "delivered"
    assert transport.provide(letter.request).kind == "already-delivered"

    with peers.client(peers.cara) as client:
        trail = client.get("/fhir/AuditEvent", params={"entity.identifier": SEARCH + SPID},
                           headers=peers.patient(SPID))

    assert trail.status_code == 200, trail.text
    created = [e["resource"] for e in trail.json()["entry"]
               if [c["code"] for c in e["resource"]["subtype"]] == ["ATC_DOC_CREATE"]]
    requestors = [next(a for a in event["agent"] if a["requestor"]) for event in created]
    assert len(created) == len(found_on_cara(peers, SPID))  # one record per document held: none twice
    assert {(a["altId"], a["role"][0]["coding"][0]["code"], a["purposeOfUse"][0]["coding"][0]["code"])
            for a in requestors} == {("valais-deliverer", "TCU", "AUTO")}
    assert {next(a["altId"] for a in event["agent"] if not a["requestor"]) for event in created} == {HCP_GLN}
    # Every delivery of this module, cara's restart included, went with the one token Valais issued.
    assert len({a["policy"][0] for a in requestors}) == 1
