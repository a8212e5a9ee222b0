"""`pdp.policies_for_merged`: a merged record is decided per document owner, deny-overrides across the
patients' policies (hypothesis over generated policy sets of both patients and every caller)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from consent.pdp import decide, policies_for_merged, provide_level
from consent.policies import Policy
from unit.consent.test_pdp_properties import (
    ACTIONS,
    LEVELS,
    OTHER_SPID,
    P,
    SPID,
    TODAY,
    anyone,
    hcps,
    policy_sets,
    uuids,
)


def permitted(who, policies, owner: str) -> set[tuple[str, str]]:
    return {(action, level) for action in ACTIONS for level in LEVELS
            if decide(principal=who, patient_spid=owner, action=action, confidentiality=level, policies=policies,
                      today=TODAY).permit}


@given(who=anyone, policies=policy_sets, owner=st.sampled_from((SPID, OTHER_SPID)))
def test_a_merge_never_permits_more_reading_than_the_owners_own_policies(who, policies, owner):
    merged = policies_for_merged(owner_spid=owner, policies=policies)
    # Writes are left out on purpose: the other's stricter provide level raises uploads (to secret, say),
    # which the next property checks.
    reads = {(a, lv) for a, lv in permitted(who, merged, owner) if a != "write"}

    assert reads <= {(a, lv) for a, lv in permitted(who, policies, owner) if a != "write"}


@given(policies=policy_sets, owner=st.sampled_from((SPID, OTHER_SPID)))
def test_the_strictest_provide_level_of_the_merged_patients_counts(policies, owner):
    merged = policies_for_merged(owner_spid=owner, policies=policies)

    assert provide_level(merged) == provide_level(policies)


@given(who=anyone, policies=policy_sets, owner=st.sampled_from((SPID, OTHER_SPID)))
def test_the_other_patients_grants_never_count_for_the_owners_documents(who, policies, owner):
    without_others = [p for p in policies if p.patient_spid == owner]
    others = [p for p in policies if p.patient_spid != owner]
    only_restrictions = [p for p in others if p.is_block or p.template == 203]

    assert permitted(who, policies_for_merged(owner_spid=owner, policies=policies), owner) == permitted(
        who, policies_for_merged(owner_spid=owner, policies=without_others + only_restrictions), owner)


@given(who=hcps, policies=policy_sets, owner=st.sampled_from((SPID, OTHER_SPID)), block_id=uuids)
def test_a_block_of_the_other_patient_denies_the_owners_documents(who, policies, owner, block_id):
    other = OTHER_SPID if owner == SPID else SPID
    block = Policy(policy_set_id=block_id, template=301, patient_spid=other, rule=P + "exclusion-list",
                   subject_id=who.user_id)
    merged = policies_for_merged(owner_spid=owner, policies=[*policies, block])

    assert permitted(who, merged, owner) == set()
