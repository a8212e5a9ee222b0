"""`XdsDocumentSource`: the gateway as a Document Source of one XDS.b community — the one door the
deliverer uses (issue 24 items 2–5).

`provide(request)` does one attempt of one submission: the patient's MPI-PID (PIX V3, cached), the
X-User Assertion (ITI-40, cached until shortly before it expires), the ITI-41 request, its answer as an
outcome (`outcomes.py`), and the audit messages of every exchange it made (ITI-45/40/41, also failed
ones) for the deliverer to keep and send (`send_audit`). It never raises for what the community or
the network does: every such case is an outcome. It knows nothing of the outbox: what to do next
(retry, raise the confidentiality, fail) is the outcome's meaning, the deliverer's decision.

Caches are per process and hold positive answers only (an MPI-PID, an assertion): a patient the
community does not know is asked again at the next attempt. An ITI-41 answer that the community does
not know the MPI-PID drops it (a merge in the community's MPI) and the document waits for the patient;
a SOAP fault drops the patient's assertion (the fault may be about it).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from adapters.cara.model import SubmissionSet
from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from adapters.community import atna, iti41, pix_v3, soap, xua
from adapters.community.authors import ResponsibleProfessional
from adapters.community.config import Community
from adapters.community.ebrim import Demographics, MetadataNotSendable, OutgoingDocument, OutgoingSubmission, Repository
from adapters.community.outcomes import Outcome, Rejected, TransportFailure, WaitingPatient
from adapters.community.pix_v3 import MpiPid, PatientUnknown, PixFailure, PixRefused
from adapters.community.tcu_assertion import TechnicalUserAssertions
from adapters.community.transport import HttpsTransport, Poster, TransportError
from adapters.community.xds_table import submission_set_unique_id
from adapters.community.xua import AssertionCache, IssuedAssertion, StsFailure

SOAP_CONTENT_TYPE = 'application/soap+xml; charset=UTF-8; action="{action}"'
GATEWAY_REFUSAL = "gateway:metadata-not-sendable"


@dataclass(frozen=True)
class ProvideRequest:
    """One attempt of one submission. Everything but `confidentiality` is the same on every attempt."""

    spid: str
    submission_set: SubmissionSet
    submission_set_unique_id: str
    submission_set_entry_uuid: str
    documents: tuple[OutgoingDocument, ...]  # each with its entryUUID and relations (community entryUUIDs)
    confidentiality: str  # normal | restricted | secret: this attempt's level (never below a document's own)
    submission_time: datetime
    demographics: Demographics = field(default_factory=Demographics)  # PID-5/7/8 when the documents lack them
    author_institution: tuple[str, str] | None = None  # (name, OID) for documents that name no institution


@dataclass(frozen=True)
class Attempt:
    """What the attempt sent, for the outbox to keep beside the answer."""

    submission_set_unique_id: str
    entry_uuids: tuple[str, ...]
    confidentiality: str
    mpi_pid: str | None
    message_id: str | None


@dataclass(frozen=True)
class ProvideAnswer:
    outcome: Outcome
    attempt: Attempt
    audit: tuple[atna.AuditMessage, ...]

    @property
    def kind(self) -> str:
        return self.outcome.kind


@dataclass(frozen=True)
class PatientLookup:
    result: MpiPid | PatientUnknown
    audit: tuple[atna.AuditMessage, ...]  # empty when answered from the cache


@dataclass(frozen=True)
class AssertionLookup:
    assertion: IssuedAssertion
    audit: tuple[atna.AuditMessage, ...]


class XdsDocumentSource:
    def __init__(self, community: Community, *, clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 http: Poster | None = None, site: atna.AuditSite | None = None,
                 patient_cache_seconds: float = 3600.0, cache_capacity: int = 100_000):
        self.community = community
        self._clock = clock
        self._http = http if http is not None else HttpsTransport(community.tls)
        self._site = site or atna.AuditSite.of(community)
        self._tcu = TechnicalUserAssertions(community.technical_user, clock=clock)
        self._assertions = AssertionCache(capacity=cache_capacity)
        self._patients: OrderedDict[str, tuple[MpiPid, datetime]] = OrderedDict()
        self._patient_ttl = timedelta(seconds=patient_cache_seconds)
        self._capacity = cache_capacity
        self._lock = threading.Lock()
        self._repository = Repository(community.repository_unique_id, community.pix_assigning_authority,
                                      community.source_id)
        self._atna = atna.AtnaSender(community)  # connects at the first send

    # -- the patient (ITI-45) ------------------------------------------------------------------
    def patient_id(self, spid: str) -> PatientLookup:
        """The MPI-PID (cached) or PatientUnknown. PixFailure (retry) or PixRefused (configuration)
        otherwise; either carries `.audit`, the failed exchange's audit message."""
        now = self._clock()
        with self._lock:
            held = self._patients.get(spid)
            if held is not None and now < held[1]:
                self._patients.move_to_end(spid)
                return PatientLookup(held[0], ())
        community = self.community
        query = pix_v3.query(spid=spid, mpi_oid=community.pix_assigning_authority, sender_oid=community.source_id,
                             receiver_oid=community.pix_receiver_oid, now=now)
        body = pix_v3.request(endpoint=community.iti45_pix_url, pix_query=query, message=soap.message_id())
        result: MpiPid | PatientUnknown | None = None
        try:
            try:
                answer = self._http.post(community.iti45_pix_url, body=body, timeout=community.timeout_seconds,
                                         content_type=SOAP_CONTENT_TYPE.format(action=pix_v3.ACTION))
            except TransportError as exc:
                raise PixFailure(f"ITI-45 {exc.text}") from None
            result = pix_v3.answer(answer, mpi_oid=community.pix_assigning_authority)
        except (PixFailure, PixRefused) as exc:
            exc.audit = (self._pix_audit(now, atna.SERIOUS_FAILURE, spid, query),)
            raise
        outcome = atna.SUCCESS if isinstance(result, MpiPid) else atna.MINOR_FAILURE
        if isinstance(result, MpiPid):
            with self._lock:
                self._patients[spid] = (result, now + self._patient_ttl)
                self._patients.move_to_end(spid)
                while len(self._patients) > self._capacity:
                    self._patients.popitem(last=False)
        return PatientLookup(result, (self._pix_audit(now, outcome, spid, query),))

    def forget_patient(self, spid: str) -> None:
        with self._lock:
            self._patients.pop(spid, None)

    # -- the X-User Assertion (ITI-40) ----------------------------------------------------------
    def assertion(self, spid: str) -> AssertionLookup:
        """The patient's X-User Assertion (cached), or StsFailure (with `.audit`): retry."""
        now = self._clock()
        cached = self._assertions.get(spid, now)
        if cached is not None:
            return AssertionLookup(cached, ())
        community, user = self.community, self.community.technical_user
        body = xua.request_security_token(spid=spid, principal_gln=user.principal_gln,
                                          principal_name=user.principal_name, applies_to=community.iti41_url)
        request = xua.sts_request(endpoint=community.iti40_sts_url, tcu_assertion=self._tcu.current(), body=body,
                                  message=soap.message_id())
        try:
            try:
                answer = self._http.post(community.iti40_sts_url, body=request, timeout=community.timeout_seconds,
                                         content_type=SOAP_CONTENT_TYPE.format(action=xua.ACTION))
            except TransportError as exc:
                raise StsFailure(f"ITI-40 {exc.text}") from None
            issued = xua.issued_assertion(answer)
        except StsFailure as exc:
            exc.audit = (self._sts_audit(now, atna.SERIOUS_FAILURE, spid),)
            raise
        self._assertions.put(spid, issued, now)
        return AssertionLookup(issued, (self._sts_audit(now, atna.SUCCESS, spid),))

    # -- ITI-41 ---------------------------------------------------------------------------------
    def provide(self, request: ProvideRequest) -> ProvideAnswer:
        if request.confidentiality not in CONFIDENTIALITY_RANK:
            raise ValueError(f"confidentiality {request.confidentiality!r} is not normal, restricted or secret")
        audit: list[atna.AuditMessage] = []
        attempt = Attempt(submission_set_unique_id(request.submission_set_unique_id),
                          tuple(d.entry_uuid for d in request.documents), request.confidentiality, None, None)

        def answer(outcome: Outcome) -> ProvideAnswer:
            return ProvideAnswer(outcome, attempt, tuple(audit))

        try:
            patient = self.patient_id(request.spid)
        except PixFailure as exc:
            audit.extend(exc.audit)
            return answer(TransportFailure(exc.text))
        except PixRefused as exc:
            audit.extend(exc.audit)
            return answer(Rejected(f"ITI-45 {exc.code}", exc.text))
        audit.extend(patient.audit)
        if isinstance(patient.result, PatientUnknown):
            return answer(WaitingPatient(f"the community does not know the patient ({patient.result.reason})"))
        mpi = patient.result
        attempt = Attempt(attempt.submission_set_unique_id, attempt.entry_uuids, attempt.confidentiality, mpi.value,
                          None)
        try:
            lookup = self.assertion(request.spid)
        except StsFailure as exc:
            audit.extend(exc.audit)
            return answer(TransportFailure(exc.text))
        audit.extend(lookup.audit)
        try:
            built = iti41.build_request(self._outgoing(request, mpi), self._repository,
                                        endpoint=self.community.iti41_url, assertion=lookup.assertion)
        except MetadataNotSendable as exc:
            return answer(Rejected(GATEWAY_REFUSAL, str(exc)))
        attempt = Attempt(attempt.submission_set_unique_id, attempt.entry_uuids, attempt.confidentiality, mpi.value,
                          built.message_id)
        now = self._clock()
        try:
            http = self._http.post(self.community.iti41_url, body=built.body, content_type=built.content_type,
                                   timeout=self.community.timeout_seconds)
            outcome = iti41.outcome_of(http, built.submission)
        except TransportError as exc:
            outcome = TransportFailure(f"ITI-41 {exc.text}")
        if isinstance(outcome, TransportFailure) and outcome.soap_fault:
            self._assertions.drop(request.spid)
        if isinstance(outcome, Rejected) and outcome.code == "XDSUnknownPatientId":
            self.forget_patient(request.spid)
            outcome = WaitingPatient(f"the community does not know MPI-PID {mpi.value} ({outcome.text})")
        indicator = {"delivered": atna.SUCCESS, "already-delivered": atna.SUCCESS,
                     "transport": atna.SERIOUS_FAILURE}.get(outcome.kind, atna.MINOR_FAILURE)
        audit.append(atna.provide_and_register(site=self._site, endpoint=self.community.iti41_url, when=now,
                                               outcome=indicator, mpi_cx=mpi.cx,
                                               submission_set_unique_id=f"urn:oid:{attempt.submission_set_unique_id}",
                                               assertion=lookup.assertion))
        return answer(outcome)

    # -- ATNA -----------------------------------------------------------------------------------
    def send_audit(self, messages: list[atna.AuditMessage]) -> None:
        """Send audit messages to the community's repository; AtnaUnavailable if it did not take them."""
        self._atna.send(messages)

    def close(self) -> None:
        self._atna.close()
        close = getattr(self._http, "close", None)
        if close is not None:
            close()

    # -- pieces ---------------------------------------------------------------------------------
    def _outgoing(self, request: ProvideRequest, mpi: MpiPid) -> OutgoingSubmission:
        user = self.community.technical_user
        name, oid = request.author_institution or (None, None)
        responsible = ResponsibleProfessional(user.principal_gln, user.principal_name, name, oid)
        return OutgoingSubmission(
            submission_set=request.submission_set, submission_set_unique_id=request.submission_set_unique_id,
            submission_set_entry_uuid=request.submission_set_entry_uuid, documents=request.documents,
            mpi_pid=mpi.value, confidentiality=request.confidentiality,
            submission_time=request.submission_time, responsible=responsible, demographics=request.demographics)

    def _pix_audit(self, now: datetime, outcome: str, spid: str, query: pix_v3.PixQuery) -> atna.AuditMessage:
        return atna.pix_query(site=self._site, endpoint=self.community.iti45_pix_url, when=now, outcome=outcome,
                              spid=spid, query=query.query, message_id=query.message_id)

    def _sts_audit(self, now: datetime, outcome: str, spid: str) -> atna.AuditMessage:
        return atna.get_x_user_assertion(site=self._site, endpoint=self.community.iti40_sts_url, when=now,
                                         outcome=outcome, spid=spid,
                                         technical_user_oid=self.community.technical_user.oid)
