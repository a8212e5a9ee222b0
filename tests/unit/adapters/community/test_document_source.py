"""`XdsDocumentSource`, the deliverer's one door, against recorded answers (no server: the HTTP poster
is injected): PIX, STS and ITI-41 in order, the caches, every outcome with its attempt and the audit
messages of every exchange made — also failed ones."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace

import pytest
from lxml import etree

from adapters.community import iti41, pix_v3, xua
from adapters.community.ebrim import Demographics
from adapters.community.outcomes import (
    AlreadyDelivered,
    Delivered,
    RaiseConfidentiality,
    Rejected,
    TransportFailure,
    WaitingPatient,
)
from adapters.community.source import GATEWAY_REFUSAL, ProvideRequest, XdsDocumentSource
from adapters.community.transport import HttpAnswer, TransportError
from unit.adapters.community.community_fixtures import (
    ENTRY_UUID,
    MPI_OID,
    MPI_PID,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    SPID,
    community,
    document,
    make_pki,
    outgoing,
    provide_and_register_schema,
    read_mtom,
    registry_answer,
    soap_fault,
    submission_set,
    xds_fixture,
    xop_reconstructed,
)

NOW = dt.datetime(2025, 9, 1, 8, 0, tzinfo=dt.UTC)
SAML = "urn:oasis:names:tc:SAML:2.0:assertion"


class RecordedCommunity:
    """The community's three endpoints answering with the recorded messages; ITI-41 answers scripted."""

    def __init__(self, source_community, clock):
        self.community = source_community
        self.clock = clock
        self.known = {SPID: MPI_PID}
        self.calls: list[tuple[str, bytes, str]] = []
        self.iti41: list = []  # answers to give, in order (default: the recorded success)
        self.sts: list = []
        self.pix: list = []

    def post(self, url: str, *, body: bytes, content_type: str, timeout: float) -> HttpAnswer:
        self.calls.append((url, body, content_type))
        if url == self.community.iti45_pix_url:
            return self._next(self.pix) or self._pix_answer(body)
        if url == self.community.iti40_sts_url:
            return self._next(self.sts) or self._sts_answer()
        assert url == self.community.iti41_url
        mtom = read_mtom(content_type, body)  # every request the facade sends is valid against the XSDs
        request = etree.fromstring(mtom.root).find("{http://www.w3.org/2003/05/soap-envelope}Body")[0]
        schema = provide_and_register_schema()
        assert schema.validate(xop_reconstructed(request, mtom.parts)), schema.error_log
        return self._next(self.iti41) or registry_answer(status="Success")

    @staticmethod
    def _next(queue):
        if not queue:
            return None
        answer = queue.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def _pix_answer(self, body: bytes) -> HttpAnswer:
        spid = etree.fromstring(body).find(".//{urn:hl7-org:v3}patientIdentifier/{urn:hl7-org:v3}value").get("extension")
        raw = xds_fixture("epr-by-example/samples/ITI-45_response_raw.xml").read_bytes()
        raw = raw.replace(b"1.3.6.1.4.1.21367.2017.2.5.93", MPI_OID.encode())
        if spid in self.known:
            raw = raw.replace(b"7f2e05e6-673e-44b6-8b76-e17ac58ea80f", self.known[spid].encode())
        else:
            raw = re.sub(rb'<ns1:subject typeCode="SUBJ">.*</ns1:subject>', b"", raw, flags=re.S)
            raw = raw.replace(b'<ns1:queryResponseCode code="OK"/>', b'<ns1:queryResponseCode code="NF"/>')
        return HttpAnswer(200, "application/soap+xml; charset=UTF-8", raw)

    def _sts_answer(self) -> HttpAnswer:
        raw = xds_fixture("epr-by-example/XUA_samples/3_Get_X-User_Assertion_Response-Technical_User.xml").read_bytes()
        until = (self.clock() + dt.timedelta(minutes=30)).strftime("%Y-%m-%dT%H:%M:%S.000Z").encode()
        return HttpAnswer(200, "application/soap+xml", raw.replace(b"2018-03-28T09:32:43.155Z", until))

    def posted(self, url: str) -> list[bytes]:
        return [body for u, body, _ in self.calls if u == url]


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def clock():
    now = [NOW]
    return now


@pytest.fixture
def world(pki, clock):
    configured = community(pki)
    recorded = RecordedCommunity(configured, lambda: clock[0])
    source = XdsDocumentSource(configured, clock=lambda: clock[0], http=recorded)
    return source, recorded, configured


def request(confidentiality="normal", doc=None, **changes) -> ProvideRequest:
    values = dict(spid=SPID, submission_set=submission_set(), submission_set_unique_id=SET_UNIQUE_ID,
                  submission_set_entry_uuid=SET_ENTRY_UUID, documents=(outgoing(doc),),
                  confidentiality=confidentiality, submission_time=NOW)
    values.update(changes)
    return ProvideRequest(**values)


def audited(answer) -> list[tuple[str, str]]:
    """(EventTypeCode, EventOutcomeIndicator) of each audit message."""
    found = []
    for message in answer.audit:
        event = etree.fromstring(message.xml).find("EventIdentification")
        found.append((event.find("EventTypeCode").get("csd-code"), event.get("EventOutcomeIndicator")))
    return found


def sent_assertion(body: bytes, content_type: str) -> bytes:
    root = read_mtom(content_type, body).root
    start = root.index(b"<saml2:Assertion")
    return root[start:root.index(b"</saml2:Assertion>", start) + len(b"</saml2:Assertion>")]


def test_a_first_delivery_asks_pix_and_sts_then_provides(world):
    source, recorded, configured = world
    answer = source.provide(request())
    assert answer.outcome == Delivered(()) and answer.kind == "delivered"
    assert [u for u, _, _ in recorded.calls] == [configured.iti45_pix_url, configured.iti40_sts_url, configured.iti41_url]
    assert (answer.attempt.submission_set_unique_id, answer.attempt.entry_uuids, answer.attempt.confidentiality,
            answer.attempt.mpi_pid) == (SET_UNIQUE_ID, (ENTRY_UUID,), "normal", MPI_PID)
    assert re.fullmatch(r"urn:uuid:[0-9a-f-]{36}", answer.attempt.message_id)
    assert audited(answer) == [("ITI-45", "0"), ("ITI-40", "0"), ("ITI-41", "0")]
    objects = etree.fromstring(answer.audit[2].xml).iter("ParticipantObjectIdentification")
    assert [o.get("ParticipantObjectID") for o in objects] == [f"{MPI_PID}^^^&{MPI_OID}&ISO", f"urn:oid:{SET_UNIQUE_ID}"]
    url, body, content_type = recorded.calls[2]
    issued = xua.issued_assertion(recorded._sts_answer())
    assert sent_assertion(body, content_type) == issued.xml  # the STS's bytes, untouched
    assert f"{MPI_PID}^^^&amp;{MPI_OID}&amp;ISO".encode() in body and SPID.encode() not in body
    sts_request = etree.fromstring(recorded.calls[1][1])
    assert sts_request.find(".//{http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd}"
                            f"Security/{{{SAML}}}Assertion/{{{SAML}}}Issuer").text == \
        f"urn:oid:{configured.technical_user.oid}"


def test_the_patient_and_the_assertion_are_cached(world, clock):
    source, recorded, configured = world
    source.provide(request())
    clock[0] += dt.timedelta(minutes=28)
    answer = source.provide(request())
    assert [u for u, _, _ in recorded.calls][3:] == [configured.iti41_url]
    assert audited(answer) == [("ITI-41", "0")]
    clock[0] += dt.timedelta(minutes=1, seconds=1)  # within a minute of NotOnOrAfter: a new assertion
    source.provide(request())
    assert [u for u, _, _ in recorded.calls][4:] == [configured.iti40_sts_url, configured.iti41_url]


def test_a_patient_the_community_does_not_know_waits_and_is_asked_again(world):
    source, recorded, configured = world
    recorded.known.clear()
    answer = source.provide(request())
    assert answer.outcome == WaitingPatient("the community does not know the patient (NF: no data found)")
    assert answer.attempt.mpi_pid is None and audited(answer) == [("ITI-45", "4")]
    recorded.known[SPID] = MPI_PID
    assert source.provide(request()).kind == "delivered"
    assert [u for u, _, _ in recorded.calls] == [configured.iti45_pix_url, configured.iti45_pix_url,
                                                  configured.iti40_sts_url, configured.iti41_url]


def test_pix_unreachable_or_refusing(world):
    source, recorded, _ = world
    recorded.pix.append(TransportError("https://pix: ConnectError: refused"))
    answer = source.provide(request())
    assert answer.outcome == TransportFailure("ITI-45 https://pix: ConnectError: refused")
    assert audited(answer) == [("ITI-45", "8")]
    query = pix_v3.query(spid=SPID, mpi_oid=MPI_OID, sender_oid="1.2", receiver_oid="1.3", now=NOW)
    ar = recorded._pix_answer(pix_v3.request(endpoint="https://pix", pix_query=query, message="m")).body.replace(
        b'<ns1:typeCode code="AA"/>', b'<ns1:typeCode code="AR"/>')
    recorded.pix.append(HttpAnswer(200, "application/soap+xml", ar))
    answer = source.provide(request())
    assert answer.outcome == Rejected("ITI-45 AR", "the query was refused") and audited(answer) == [("ITI-45", "8")]


def test_an_sts_fault_is_transport_class_with_its_text(world):
    source, recorded, configured = world
    recorded.sts.append(soap_fault("ERROR #5001: Failed to load user"))
    answer = source.provide(request())
    assert answer.outcome == TransportFailure("STS answered HTTP 500: SOAP fault soap:Receiver: ERROR #5001: Failed to "
                                              "load user")
    assert audited(answer) == [("ITI-45", "0"), ("ITI-40", "8")]
    assert configured.iti41_url not in [u for u, _, _ in recorded.calls]


def test_the_consent_filter_then_the_next_level(world):
    source, recorded, configured = world
    recorded.iti41.append(registry_answer([("XDSRepositoryError", "Consent filter applied", None)]))
    first = source.provide(request("normal"))
    assert isinstance(first.outcome, RaiseConfidentiality) and first.outcome.next_level == "restricted"
    assert audited(first)[-1] == ("ITI-41", "4")
    second = source.provide(request(first.outcome.next_level))
    assert second.kind == "delivered" and second.attempt.confidentiality == "restricted"
    bodies = recorded.posted(configured.iti41_url)
    assert [b'nodeRepresentation="17621005"' in b for b in bodies] == [True, False]
    assert b'nodeRepresentation="263856008"' in bodies[1]
    assert first.attempt.submission_set_unique_id == second.attempt.submission_set_unique_id
    assert first.attempt.entry_uuids == second.attempt.entry_uuids


def test_a_lost_answer_then_the_duplicate_submission_set(world):
    source, recorded, configured = world
    recorded.iti41.append(TransportError("https://rep: ReadTimeout"))
    recorded.iti41.append(registry_answer([("XDSDuplicateUniqueIdInRegistry", f"uniqueId {SET_UNIQUE_ID} exists",
                                            None)]))
    first, second = source.provide(request()), source.provide(request())
    assert first.outcome == TransportFailure("ITI-41 https://rep: ReadTimeout") and audited(first)[-1] == ("ITI-41", "8")
    assert isinstance(second.outcome, AlreadyDelivered) and audited(second) == [("ITI-41", "0")]
    one, two = (re.sub(rb"urn:uuid:[0-9a-f-]{36}</MessageID>|[0-9a-f]{32}@epr-gateway", b"", read_mtom(ct, b).root)
                for u, b, ct in recorded.calls if u == configured.iti41_url)
    assert one == two  # the same submission, byte for byte, but for the message id and the part's Content-ID


def test_a_soap_fault_from_the_repository_drops_the_patients_assertion(world):
    source, recorded, configured = world
    recorded.iti41.append(soap_fault("Assertion not valid"))
    assert source.provide(request()).kind == "transport"
    source.provide(request())
    assert [u for u, _, _ in recorded.calls][3:] == [configured.iti40_sts_url, configured.iti41_url]


def test_an_mpi_pid_the_repository_does_not_know_waits_for_the_patient_again(world):
    source, recorded, configured = world
    recorded.iti41.append(registry_answer([("XDSUnknownPatientId", f"{MPI_PID} unknown", None)]))
    answer = source.provide(request())
    assert answer.outcome == WaitingPatient(f"the community does not know MPI-PID {MPI_PID} (XDSUnknownPatientId: "
                                            f"{MPI_PID} unknown)")
    source.provide(request())
    assert [u for u, _, _ in recorded.calls][3:] == [configured.iti45_pix_url, configured.iti41_url]


def test_metadata_the_community_would_refuse_is_not_sent(world):
    source, recorded, configured = world
    answer = source.provide(request(doc=document(family=None)))
    assert answer.outcome.code == GATEWAY_REFUSAL and "PID-5" in answer.outcome.text
    assert configured.iti41_url not in [u for u, _, _ in recorded.calls]
    assert audited(answer) == [("ITI-45", "0"), ("ITI-40", "0")]  # the exchanges made are audited
    assert source.provide(request(doc=document(family=None), demographics=Demographics("Zeller"))).kind == "delivered"


def test_an_unknown_confidentiality_is_a_programming_error(world):
    source, _, _ = world
    with pytest.raises(ValueError, match="confidentiality 'public'"):
        source.provide(request("public"))


def test_the_lookups_on_their_own(world):
    source, recorded, _ = world
    lookup = source.patient_id(SPID)
    assert lookup.result == pix_v3.MpiPid(MPI_PID, MPI_OID) and len(lookup.audit) == 1
    assert source.patient_id(SPID).audit == ()
    assertion = source.assertion(SPID)
    assert assertion.assertion.subject == "2000000090201" and source.assertion(SPID).audit == ()
    recorded.sts.append(TransportError("https://sts: ConnectError: refused"))
    with pytest.raises(xua.StsFailure) as caught:
        source.assertion("761337610411353650")
    assert caught.value.text == "ITI-40 https://sts: ConnectError: refused" and len(caught.value.audit) == 1


def test_the_request_posted_is_the_one_built(world):
    source, recorded, configured = world
    source.provide(request())
    _, body, content_type = recorded.calls[-1]
    assert content_type.startswith("multipart/related; ") and 'start-info="application/soap+xml"' in content_type
    assert read_mtom(content_type, body).params["action"] == iti41.ACTION
    pix_content_type = recorded.calls[0][2]
    assert pix_content_type == 'application/soap+xml; charset=UTF-8; action="urn:hl7-org:v3:PRPA_IN201309UV02"'
    assert replace(request(), confidentiality="secret").documents == request().documents
