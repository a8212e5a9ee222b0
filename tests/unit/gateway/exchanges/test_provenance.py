"""`provenance.with_provenance`: originalProviderRole and the submitter come from the principal, never
from the request; a request stating another role is refused at the extension's FHIRPath."""

from __future__ import annotations

from dataclasses import replace

import pytest

from adapters.cara.errors import ProfileViolation
from adapters.cara.model import Code, Submitter
from adapters.cara.vocabulary import EXT_AUTHOR_ROLE, ROLE_SYSTEM
from functional.test_batch_provide import submission
from gateway.exchanges.provenance import submitter_of, with_provenance
from unit.gateway.exchanges.exchange_world import HCP, TCU


def document(role: str | None):
    new = submission("letter").documents[0]
    return replace(new, entry=replace(new.entry, original_provider_role=Code(ROLE_SYSTEM, role, "x") if role else None),
                   location="Bundle.entry[0].resource")


@pytest.mark.parametrize("sent", [None, "TCU"])
def test_the_role_and_submitter_are_the_principals(sent):
    stored = with_provenance(TCU, document(sent))

    role = stored.entry.original_provider_role
    assert (role.system, role.code) == (ROLE_SYSTEM, "TCU")
    assert stored.entry.submitter == Submitter(role="TCU", user_id="infomed-migration", acting_for=TCU.acting_for)
    assert submitter_of(HCP) == Submitter(role="HCP", user_id=HCP.user_id, acting_for=None)


def test_another_role_in_the_request_is_refused_where_it_was_written():
    with pytest.raises(ProfileViolation) as refused:
        with_provenance(HCP, document("PAT"))

    assert [(i.location) for i in refused.value.issues] == [
        f"Bundle.entry[0].resource.extension('{EXT_AUTHOR_ROLE}').valueCoding"]
    assert refused.value.message.startswith("originalProviderRole PAT is not the role of the authenticated user: "
                                            "send the role of your token (HCP)")
