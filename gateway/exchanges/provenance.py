"""Who provided a document, as the gateway knows it: set from the authenticated principal, never
taken from the request.

Why: `originalProviderRole` tells a reader whether a document comes from a professional or from the
patient (a patient's own upload is weighed differently). A client that could write it could pass a
professional's upload off as the patient's. So the stored value is the principal's role, and one rule
says what a client sends: ITI-65 must carry it (the CH MHD profile requires the extension,
`mhd_rules`) and it must be the token's role — both refusals (422, at the value's FHIRPath, nothing
stored) say so in the same words. HL7 v2 and XDM carry no such field: their mappings leave it out and
the gateway sets the principal's role.

The submitter (role, user id, responsible GLN) is recorded beside it, so that a technical user may
later name what it submitted itself (see `upload_rules.UploadRules.may_name`).
"""

from __future__ import annotations

from dataclasses import replace

from adapters.cara.errors import ProfileViolation
from adapters.cara.mhd_rules import provider_role_rule
from adapters.cara.model import Code, NewDocument, Submitter
from adapters.cara.vocabulary import EXT_AUTHOR_ROLE, ROLE_SYSTEM
from consent.principal import Principal


def submitter_of(principal: Principal) -> Submitter:
    return Submitter(role=principal.role, user_id=principal.user_id, acting_for=principal.acting_for)


def with_provenance(principal: Principal, document: NewDocument) -> NewDocument:
    """The document with its originalProviderRole and submitter set from `principal`."""
    sent = document.entry.original_provider_role
    if sent is not None and (sent.system, sent.code) != (ROLE_SYSTEM, principal.role):
        where = document.location or "DocumentReference"
        raise ProfileViolation(
            f"originalProviderRole {sent.code} is not the role of the authenticated user: "
            f"{provider_role_rule(principal.role)}", location=f"{where}.extension('{EXT_AUTHOR_ROLE}').valueCoding")
    role = Code(ROLE_SYSTEM, principal.role, sent.display if sent is not None else None)
    return replace(document, entry=document.entry.copy_with(original_provider_role=role,
                                                            submitter=submitter_of(principal)))
