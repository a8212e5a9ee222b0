"""POST [base]: one FHIR endpoint, three exchanges told apart by the Bundle's content.

A Bundle whose every entry is a PUT of a DocumentReference is a CH:MHD-1 metadata update; one whose
entries are (or target) Consents is PPQ-4; anything else is answered as ITI-65 Provide Document
Bundle, with MHD's errors. Telling them apart is a use-case decision (which rules, which audit
record), not the HTTP face's: any face that receives such a Bundle gets the same answer.
"""

from __future__ import annotations

from typing import Any

from adapters.cara.client_json import JsonLimits
from adapters.cara.errors import RecordError
from adapters.cara.fhir_mapping import parse_resource
from consent.principal import Principal
from gateway.exchanges.auditing import Auditor
from gateway.exchanges.documents import DocumentExchange, is_consent_bundle
from gateway.exchanges.metadata import MetadataExchange, is_metadata_update_bundle
from gateway.exchanges.policies import PolicyExchange


class TransactionExchange:
    def __init__(self, *, documents: Exchange, policies: PolicyExchange, metadata: MetadataExchange,
                 auditor: Auditor, json_limits: JsonLimits):
        self._documents = documents
        self._policies = policies
        self._metadata = metadata
        self._auditor = auditor
        self._json_limits = json_limits

    def submit(self, *, principal: Principal, body: bytes, base_url: str) -> dict[str, Any]:
        """The transaction-response Bundle of whichever exchange the Bundle is."""
        try:
            bundle = parse_resource(body, "Bundle", limits=self._json_limits)
        except RecordError as error:  # not even a Bundle: still an exchange, and refused ones are audited
            self._auditor.failure("ITI-65", principal, error)
            raise
        if is_metadata_update_bundle(bundle):  # CH:MHD-1
            return self._metadata.update_bundle(principal=principal, bundle=bundle, base_url=base_url)
        if is_consent_bundle(bundle):
            return self._policies.transaction(principal=principal, bundle=bundle)
        return self._documents.provide_bundle(principal=principal, bundle=bundle, base_url=base_url).response
