"""Who is acting: the one value authentication hands to the use-case layer, consent and audit."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Group:
    id: str  # urn:oid:…
    name: str | None = None


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    role: PAT, REP, HCP, ASS, TCU, DADM, PADM (urn:oid:2.16.756.5.30.1.127.3.10.6).
    user_id / user_id_qualifier: GLN (urn:gs1:gln) for HCP/ASS, SPID for PAT, representative id
    for REP, a plain id for the others.
    purpose_of_use: NORM, EMER, AUTO or DICOM_AUTO.
    acting_for: GLN of the responsible HCP for ASS and TCU (ch_delegation.principal_id).
    patient_spid: the SPID the token is bound to (extended token `person_id`; PAT's own SPID).
    client: the client system (token `client_id`) and, with mutual TLS, the certificate subject.
    emergency_reason: why a professional claims an emergency (purpose EMER), as they wrote it on the
    professionals' page: the audit record carries it (`purposeOfUse.text`), the patient's notification too.
    """

    role: str
    user_id: str
    user_id_qualifier: str | None = None
    name: str | None = None
    purpose_of_use: str = "NORM"
    acting_for: str | None = None
    acting_for_name: str | None = None
    groups: tuple[Group, ...] = field(default_factory=tuple)
    organisation: str | None = None
    organisation_id: str | None = None
    patient_spid: str | None = None
    token_id: str | None = None
    issuer: str | None = None
    client_id: str | None = None
    client_certificate: str | None = None
    home_community_id: str | None = None
    emergency_reason: str | None = None
