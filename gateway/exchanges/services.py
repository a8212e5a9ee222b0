"""The use-cases, as the faces receive them: one object per exchange family, nothing else.

Infrastructure (engine, keyring, token verifier, the HTTP face's refusal counter, the portal's
directory) is not here: the composition root (`gateway/wiring.py`) holds it and hands each face what
that face owns. So a face given `Services` can reach the record only through a use-case, which decides
and audits (`tests/unit/test_layers.py` holds faces to it, also through attribute chains).
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.exchanges.auditing import Auditor
from gateway.exchanges.document_lists import DocumentLists
from gateway.exchanges.documents import DocumentExchange
from gateway.exchanges.identity import IdentityExchange
from gateway.exchanges.metadata import MetadataExchange
from gateway.exchanges.policies import PolicyExchange
from gateway.exchanges.portal import PortalExchange
from gateway.exchanges.professionals import ProfessionalExchange
from gateway.exchanges.trail import AuditTrail
from gateway.exchanges.transaction import TransactionExchange


@dataclass(frozen=True)
class Services:
    exchange: DocumentExchange  # documents: ITI-65 (one and many), ITI-67, reads, ITI-68, ITI-104
    identities: IdentityExchange  # PIXm, PDQm, $match, merge/unmerge, identity reviews
    policies: PolicyExchange  # PPQ-3/4/5, onboarding, notifications
    metadata: MetadataExchange  # CH:MHD-1
    trail: AuditTrail  # ITI-81
    portal: PortalExchange  # the patient's page's own use-cases (sign-in, notifications seen)
    professionals: ProfessionalExchange  # the professionals' page's own (sign-in, emergency, upload, activity)
    transactions: TransactionExchange  # POST [base]: MHD-1, PPQ-4 or ITI-65 by the Bundle's content
    lists: DocumentLists  # the SubmissionSet Lists: ITI-66, List/{id}
    auditor: Auditor  # a face's own refusals (authentication, size, media type) and deferred read records
