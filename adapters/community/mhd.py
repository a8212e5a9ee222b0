"""`MhdDocumentSource`: the gateway as an MHD Document Source of a remote Document Recipient (another
gateway, an MHD front of a community) — the second transport behind the deliverer's one door
(issue 24 item 7), with the request and outcome types of `XdsDocumentSource`.

`provide(request)` does one attempt of one submission: an IUA token by client credentials
(`client_credentials.py`, kept until shortly before it expires), the ITI-65 Bundle (`mhd_bundle.py`)
POSTed to the recipient's FHIR base over mutual TLS with the token as bearer, and the answer as an
outcome (`mhd_answers.py`). A 401 gets one new token and one more try (the recipient may have
rotated keys or the token expired on its clock); then it is a transport failure. It never raises for
what the recipient, the token endpoint or the network does.

Decisions, each the recipient's way of doing what the XDS community does otherwise:
- The patient is named by the SPID (CH EPR FHIR: `subject.identifier`): no PIX step, no MPI-PID in
  the attempt. A patient the recipient does not know answers 422 XDSPatientIDReconciliationError:
  the document waits for the patient.
- The provide level: a recipient that raises uploads to the patient's level itself (the gateway does,
  `EPR_PROVIDE_LEVEL_MODE=raise`) never refuses a level, so this transport never answers
  `RaiseConfidentiality`; a recipient that refuses (reject mode) answers 422 without a code for it,
  which is `Rejected` with its words, for an operator.
- Audit: the recipient records the ITI-65 in its own ledger, and this gateway's ledger records every
  delivery attempt (the deliverer's record); an MHD recipient has no ATNA repository in the
  configuration, so `ProvideAnswer.audit` is empty and `send_audit` takes nothing.
- Each attempt carries a new W3C `traceparent` (kept as the attempt's `message_id`), so the attempt
  and the recipient's audit record of it can be found together.
- A token endpoint that refuses the client (an OAuth error) is `Rejected` with code `token:<error>`,
  a configuration matter like the PIX manager refusing the gateway; one that cannot be reached is a
  transport failure.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.x509.oid import NameOID

from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from adapters.community import mhd_answers
from adapters.community.atna import AuditMessage
from adapters.community.client_credentials import ClientCredentials, TokenRefused, TokenUnavailable
from adapters.community.config import Community, MhdCommunity
from adapters.community.ebrim import MetadataNotSendable
from adapters.community.mhd_bundle import MhdSubmission, build_bundle, urn_oid
from adapters.community.outcomes import Outcome, Rejected, TransportFailure
from adapters.community.source import GATEWAY_REFUSAL, Attempt, ProvideAnswer, ProvideRequest, XdsDocumentSource
from adapters.community.transport import HttpAnswer, HttpsTransport, Poster, TransportError

FHIR_JSON = "application/fhir+json"


class MhdDocumentSource:
    def __init__(self, community: MhdCommunity, *, http: Poster | None = None,
                 tokens: ClientCredentials | None = None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)):
        self.community = community
        self._http = http if http is not None else HttpsTransport(community.tls)
        self._clock = clock
        self.client_id = client_id = community.client_id or certificate_common_name(community.tls.client_cert)
        self._tokens = tokens or ClientCredentials(token_url=community.token_url, client_id=client_id,
                                                   resource=community.mhd_url, http=self._http,
                                                   timeout=community.timeout_seconds)

    def provide(self, request: ProvideRequest) -> ProvideAnswer:
        if request.confidentiality not in CONFIDENTIALITY_RANK:
            raise ValueError(f"confidentiality {request.confidentiality!r} is not normal, restricted or secret")
        traceparent = f"00-{secrets.token_hex(16)}-{secrets.token_hex(8)}-01"
        attempt = Attempt(urn_oid(request.submission_set_unique_id), tuple(d.entry_uuid for d in request.documents),
                          request.confidentiality, None, traceparent)

        def answer(outcome: Outcome) -> ProvideAnswer:
            return ProvideAnswer(outcome, attempt, ())

        try:
            body = build_bundle(self._submission(request))
        except MetadataNotSendable as exc:
            return answer(Rejected(GATEWAY_REFUSAL, str(exc)))
        return answer(self._send(request, body, traceparent))

    def send_audit(self, messages: list[AuditMessage]) -> None:
        """Nothing to send: `provide` makes no ATNA message (see the module's docstring)."""
        if messages:
            raise ValueError("an MHD recipient has no ATNA repository: its transport makes no audit messages")

    def close(self) -> None:
        close = getattr(self._http, "close", None)
        if close is not None:
            close()

    def _send(self, request: ProvideRequest, body: bytes, traceparent: str) -> Outcome:
        answer = self._post(body, traceparent)
        if isinstance(answer, HttpAnswer) and answer.status == 401:  # one new token, one more try
            answer = self._post(body, traceparent)
            if isinstance(answer, HttpAnswer) and answer.status == 401:
                challenge = answer.www_authenticate[:300] or "no challenge"
                return TransportFailure(f"ITI-65 HTTP 401 with a new token too ({challenge})")
        if not isinstance(answer, HttpAnswer):
            return answer
        return mhd_answers.outcome_of(
            answer, entry_count=1 + 2 * len(request.documents), entry_uuids=tuple(d.entry_uuid for d in request.documents),
            submission_set_unique_id=request.submission_set_unique_id,
            document_unique_ids=tuple(d.document.entry.unique_id for d in request.documents))

    def _post(self, body: bytes, traceparent: str) -> HttpAnswer | Outcome:
        """The recipient's answer, or the outcome when there is none (no token, no connection). A 401
        drops the token it refused."""
        try:
            token = self._tokens.token()
        except TokenUnavailable as exc:
            return TransportFailure(exc.text)
        except TokenRefused as exc:
            return Rejected(f"token:{exc.error}", exc.description)
        headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON, "traceparent": traceparent}
        try:
            answer = self._http.post(self.community.mhd_url, body=body, content_type=FHIR_JSON,
                                     timeout=self.community.timeout_seconds, headers=headers)
        except TransportError as exc:
            return TransportFailure(f"ITI-65 {exc.text}")
        if answer.status == 401:
            self._tokens.invalidate(token)
        return answer

    def _submission(self, request: ProvideRequest) -> MhdSubmission:
        source_id = self.community.source_id or request.submission_set.source_id
        return MhdSubmission(spid=request.spid, submission_set_unique_id=request.submission_set_unique_id,
                             submission_set_entry_uuid=request.submission_set_entry_uuid, source_id=source_id,
                             submission_time=request.submission_time, title=request.submission_set.title,
                             documents=request.documents, confidentiality=request.confidentiality,
                             demographics=request.demographics)


def certificate_common_name(path) -> str:
    """The client certificate's CN: the `client_id` when the configuration names none (RFC 8705 binds
    the client to its certificate; the development token endpoint registers clients by CN)."""
    certificate = x509.load_pem_x509_certificate(path.read_bytes())
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if not names:
        raise ValueError(f"{path}: the client certificate has no CN; configure client_id")
    return str(names[0].value)


def document_source(community: Community | MhdCommunity) -> XdsDocumentSource | MhdDocumentSource:
    """The transport a configured community is reached by (`config.load_communities` tells them apart by
    their keys): a remote MHD Document Recipient, or an XDS.b affinity domain over SOAP."""
    if isinstance(community, MhdCommunity):
        return MhdDocumentSource(community)
    return XdsDocumentSource(community)
