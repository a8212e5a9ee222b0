"""`MhdDocumentSource`, the deliverer's door to a remote MHD Document Recipient, without a server: the
token endpoint and the recipient are one strict in-memory peer (it checks the token request, the bearer
token it issued, and every Bundle with fhir.resources R4B, the CH MHD rules and the recipient gateway's
own mapping; it answers as the gateway's FHIR face does). Each outcome with its attempt; the token
obtained once, renewed on a 401 once; nothing sent that the rules refuse. Real TLS: test_mhd_two_gateways."""

from __future__ import annotations

import datetime as dt
import json
from urllib.parse import parse_qs

import orjson
import pytest
from fhir.resources.R4B.bundle import Bundle

from adapters.cara.fhir_mapping import submission_from_bundle, transaction_response
from adapters.cara.mhd_rules import check_provide_bundle
from adapters.community.config import MhdCommunity, parse_communities
from adapters.community.ebrim import Demographics
from adapters.community.mhd import MhdDocumentSource, certificate_common_name, document_source
from adapters.community.outcomes import AlreadyDelivered, Delivered, Rejected, TransportFailure
from adapters.community.source import GATEWAY_REFUSAL, Attempt, ProvideRequest, XdsDocumentSource
from adapters.community.transport import HttpAnswer, TransportError
from unit.adapters.community.community_fixtures import (
    ENTRY_UUID,
    PRINCIPAL_GLN,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    SPID,
    document,
    community,
    make_pki,
    outgoing,
    submission_set,
)

MHD_URL = "https://cara.example.ch:8443/fhir"
TOKEN_URL = "https://valais.example.ch:8443/dev-issuer/token"
WHEN = dt.datetime(2025, 9, 1, 8, 0, tzinfo=dt.UTC)


class Recipient:
    """The token endpoint and the MHD Document Recipient. Keeps every document it took by uniqueId; a
    re-sent one with the same bytes is answered `200 OK` (the gateway's idempotent answer)."""

    def __init__(self):
        self.issued: list[str] = []
        self.token_requests: list[dict] = []
        self.provides: list[tuple[dict, dict]] = []  # (headers, bundle)
        self.stored: dict[str, str] = {}  # uniqueId → entry id
        self.answers: list = []  # scripted answers to ITI-65, in order (then the recipient's own)
        self.token_answers: list = []

    def post(self, url, *, body, content_type, timeout, headers=None):
        if url == TOKEN_URL:
            return self._token(body, content_type)
        assert url == MHD_URL and content_type == "application/fhir+json"
        bundle = json.loads(body)
        self.provides.append((dict(headers or {}), bundle))
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        if headers.get("Authorization") != f"Bearer {self.issued[-1]}":
            return HttpAnswer(401, "application/fhir+json", b"{}", 'Bearer error="invalid_token"')
        Bundle.model_validate(bundle)
        assert check_provide_bundle(bundle) == []
        submission = submission_from_bundle(bundle)
        locations = [("201 Created", f"{MHD_URL}/List/{submission.submission_set.submission_set_id}")]
        for new in submission.documents:
            created = new.entry.unique_id not in self.stored
            entry_id = self.stored.setdefault(new.entry.unique_id, new.entry.entry_id)
            status = "201 Created" if created else "200 OK"
            locations += [(status, f"{MHD_URL}/DocumentReference/{entry_id}"), (status, f"{MHD_URL}/Binary/{entry_id}")]
        if all(status == "200 OK" for status, _ in locations[1:]):
            locations[0] = ("200 OK", locations[0][1])
        return HttpAnswer(200, "application/fhir+json",
                          orjson.dumps(transaction_response(locations, last_modified="2025-09-01T08:00:00Z")))

    def _token(self, body, content_type):
        assert content_type == "application/x-www-form-urlencoded"
        self.token_requests.append(parse_qs(body.decode(), strict_parsing=True))
        if self.token_answers:
            answer = self.token_answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        self.issued.append(f"token-{len(self.issued) + 1}")
        return HttpAnswer(200, "application/json", orjson.dumps(
            {"access_token": self.issued[-1], "token_type": "Bearer", "expires_in": 300}))


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def mhd_community(pki, **changes) -> MhdCommunity:
    entry = {"id": "cara-mhd", "mhd_url": MHD_URL, "token_url": TOKEN_URL, "principal_gln": PRINCIPAL_GLN,
             "principal_name": "Dr. Luc Favre",
             "tls": {"ca": str(pki.ca_cert), "client_cert": str(pki.client_cert), "client_key": str(pki.client_key)},
             **changes}
    (parsed,) = parse_communities([entry], base=pki.ca_cert.parent)
    return parsed


def request(*documents, confidentiality="normal") -> ProvideRequest:
    return ProvideRequest(spid=SPID, submission_set=submission_set(), submission_set_unique_id=SET_UNIQUE_ID,
                          submission_set_entry_uuid=SET_ENTRY_UUID, documents=documents or (outgoing(),),
                          confidentiality=confidentiality, submission_time=WHEN,
                          demographics=Demographics("Zeller-Robert-Nicoud", ("Romain",)))


@pytest.fixture
def recipient():
    return Recipient()


@pytest.fixture
def source(pki, recipient):
    return MhdDocumentSource(mhd_community(pki, client_id="valais-deliverer", source_id="2.16.756.5.30.1.145.20.1"),
                             http=recipient)


def test_a_provide_is_delivered_with_its_attempt_and_no_atna_message(source, recipient):
    answer = source.provide(request())

    [(headers, bundle)] = recipient.provides
    [stored_id] = recipient.stored.values()
    assert answer.outcome == Delivered(locations=((ENTRY_UUID, f"DocumentReference/{stored_id}"),))
    assert answer.attempt == Attempt(f"urn:oid:{SET_UNIQUE_ID}", (ENTRY_UUID,), "normal", None, headers["traceparent"])
    assert answer.audit == ()
    assert headers == {"Authorization": "Bearer token-1", "Accept": "application/fhir+json",
                       "traceparent": headers["traceparent"]}
    assert headers["traceparent"].startswith("00-") and len(headers["traceparent"]) == 55
    assert recipient.token_requests == [{"grant_type": ["client_credentials"], "client_id": ["valais-deliverer"],
                                         "resource": [MHD_URL], "scope": [recipient.token_requests[0]["scope"][0]]}]
    assert bundle["entry"][0]["resource"]["extension"][1]["valueIdentifier"]["value"] == "urn:oid:2.16.756.5.30.1.145.20.1"


def test_a_resent_submission_is_already_delivered_with_the_same_ids_and_one_token(source, recipient):
    first = source.provide(request())
    again = source.provide(request(confidentiality="restricted"))

    assert isinstance(again.outcome, AlreadyDelivered)
    assert again.outcome.locations == first.outcome.locations
    assert len(recipient.token_requests) == 1
    one, two = (bundle for _, bundle in recipient.provides)
    assert [e["fullUrl"] for e in one["entry"]] == [e["fullUrl"] for e in two["entry"]]
    assert one["entry"][0]["resource"]["identifier"] == two["entry"][0]["resource"]["identifier"]
    assert first.attempt.message_id != again.attempt.message_id  # each attempt its own trace


def test_a_401_gets_one_new_token_and_one_more_try(source, recipient):
    source.provide(request(outgoing(document(unique_id="urn:oid:2.25.1"))))
    recipient.issued.append("rotated")  # the recipient no longer takes token-1

    answer = source.provide(request(outgoing(document(unique_id="urn:oid:2.25.2"))))

    assert answer.kind == "delivered"
    assert [h["Authorization"] for h, _ in recipient.provides] == ["Bearer token-1", "Bearer token-1",
                                                                   "Bearer token-3"]
    assert len(recipient.token_requests) == 2


def test_a_second_401_is_a_transport_failure_with_the_recipients_challenge(source, recipient):
    refused = HttpAnswer(401, "application/fhir+json", b"{}", 'Bearer error="invalid_token", error_description="wrong audience"')
    recipient.answers = [refused, refused]

    answer = source.provide(request())

    assert answer.outcome == TransportFailure(
        'ITI-65 HTTP 401 with a new token too (Bearer error="invalid_token", error_description="wrong audience")')
    assert len(recipient.token_requests) == 2 and len(recipient.provides) == 2


def test_the_token_endpoint_refusing_the_client_is_rejected_for_an_operator(source, recipient):
    recipient.token_answers = [HttpAnswer(401, "application/json", orjson.dumps(
        {"error": "invalid_client", "error_description": "no client certificate"}))]

    answer = source.provide(request())

    assert answer.outcome == Rejected("token:invalid_client", "no client certificate")
    assert recipient.provides == []


def test_the_token_endpoint_down_is_a_transport_failure(source, recipient):
    recipient.token_answers = [TransportError(f"{TOKEN_URL}: ConnectError: [Errno 111] Connection refused")]

    answer = source.provide(request())

    assert answer.outcome == TransportFailure(
        f"token endpoint {TOKEN_URL}: ConnectError: [Errno 111] Connection refused")
    assert recipient.provides == []


def test_the_recipient_unreachable_is_a_transport_failure(source, recipient):
    recipient.answers = [TransportError(f"{MHD_URL}: no answer in time (ReadTimeout)")]

    assert source.provide(request()).outcome == TransportFailure(f"ITI-65 {MHD_URL}: no answer in time (ReadTimeout)")


def test_what_the_rules_refuse_is_not_sent(source, recipient):
    answer = source.provide(request(outgoing(document(content=b""))))

    assert isinstance(answer.outcome, Rejected) and answer.outcome.code == GATEWAY_REFUSAL
    assert "content" in answer.outcome.text
    assert recipient.provides == [] and recipient.token_requests == []


def test_a_confidentiality_that_is_no_level_is_a_programming_error(source):
    with pytest.raises(ValueError, match="not normal, restricted or secret"):
        source.provide(request(confidentiality="very-restricted"))


def test_there_is_no_audit_message_to_send(source):
    source.send_audit([])
    with pytest.raises(ValueError, match="no ATNA repository"):
        source.send_audit([object()])


def test_without_a_client_id_the_certificates_common_name_names_the_client(pki, recipient):
    source = MhdDocumentSource(mhd_community(pki), http=recipient)
    named = MhdDocumentSource(mhd_community(pki, client_id="valais-deliverer"), http=recipient)

    source.provide(request())

    assert recipient.token_requests[0]["client_id"] == ["epr-gateway source"] == [source.client_id]
    assert certificate_common_name(pki.client_cert) == "epr-gateway source"
    assert recipient.provides[0][1]["entry"][0]["resource"]["extension"][1]["valueIdentifier"]["value"] == (
        "urn:oid:2.16.756.5.30.1.145")  # no source_id configured: the submission set's own
    assert named.client_id == "valais-deliverer"  # the deliverer acts as the client the token names


def test_the_configuration_chooses_the_transport(pki):
    mhd, xds = document_source(mhd_community(pki)), document_source(community(pki))
    try:
        assert (type(mhd), type(xds)) == (MhdDocumentSource, XdsDocumentSource)
    finally:
        mhd.close()
        xds.close()
