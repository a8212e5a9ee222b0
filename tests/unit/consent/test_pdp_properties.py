"""Properties of the decision point over generated policy sets and callers (hypothesis)."""

from __future__ import annotations

from datetime import date, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from consent.pdp import decide, visible_levels
from consent.policies import Policy
from consent.principal import Group, Principal

TODAY = date(2025, 6, 15)
SPID = "761337610000000002"
OTHER_SPID = "761337610000000019"
GLNS = ("7600000000005", "7601000000002", "7601000000019", "7601000000026")
GROUPS = ("urn:oid:2.16.756.5.30.1.99.1", "urn:oid:2.16.756.5.30.1.99.2", "urn:oid:2.16.756.5.30.1.99.3")
REPS = ("representative12345", "rep-2")
# Subjects nobody generated below ever is: policies about other people.
STRANGER_GLNS = ("7601000000033", "7601000000040")
STRANGER_GROUPS = ("urn:oid:2.16.756.5.30.1.99.8", "urn:oid:2.16.756.5.30.1.99.9")
LEVELS = ("normal", "restricted", "secret")
ACTIONS = ("read", "write", "manage-policies", "read-audit")
PURPOSES = ("NORM", "EMER", "AUTO", "DICOM_AUTO")
P = "urn:e-health-suisse:2015:policies:"
RULES = {
    201: ("access-level:full",), 202: ("access-level:normal", "access-level:restricted"),
    203: ("provide-level:normal", "provide-level:restricted", "provide-level:secret"),
    301: ("access-level:normal", "access-level:restricted", "exclusion-list"),
    302: ("access-level:normal", "access-level:restricted"), 303: ("access-level:full",),
    304: ("access-level:delegation-and-normal", "access-level:delegation-and-restricted"),
}
GRANT_RULES = {301: ("access-level:normal", "access-level:restricted"), 302: RULES[302], 304: RULES[304]}

uuids = st.uuids().map(lambda u: f"urn:uuid:{u}")
offsets = st.one_of(st.none(), st.integers(min_value=-40, max_value=40))


def day(offset: int | None) -> date | None:
    return None if offset is None else TODAY + timedelta(days=offset)


@st.composite
def a_policy(draw, *, templates=tuple(RULES), rules=RULES, glns=GLNS, groups=GROUPS, spids=(SPID, OTHER_SPID),
             start=offsets, end=offsets) -> Policy:
    template = draw(st.sampled_from(templates))
    spid = draw(st.sampled_from(spids))
    subject = {201: st.just(spid), 202: st.none(), 203: st.none(), 301: st.sampled_from(glns),
               302: st.sampled_from(groups), 303: st.sampled_from(REPS), 304: st.sampled_from(glns)}[template]
    undated = template in (201, 202, 203)
    return Policy(policy_set_id=draw(uuids), template=template, patient_spid=spid,
                  rule=P + draw(st.sampled_from(rules[template])), subject_id=draw(subject),
                  start=None if undated else day(draw(start)), end=None if undated else day(draw(end)))


policy_sets = st.lists(a_policy(), max_size=8)
group_sets = st.lists(st.sampled_from(GROUPS), max_size=3, unique=True).map(lambda ids: tuple(map(Group, ids)))
purposes = st.sampled_from(PURPOSES)

hcps = st.builds(lambda gln, groups, purpose: Principal(role="HCP", user_id=gln, groups=groups,
                                                        purpose_of_use=purpose),
                 st.sampled_from(GLNS), group_sets, purposes)
assistants = st.builds(lambda own, gln, groups, purpose: Principal(role="ASS", user_id=own, acting_for=gln,
                                                                   groups=groups, purpose_of_use=purpose),
                       st.sampled_from(GLNS), st.sampled_from(GLNS), group_sets, purposes)
technical_users = st.builds(lambda gln, purpose: Principal(role="TCU", user_id="infomed-migration", acting_for=gln,
                                                           purpose_of_use=purpose),
                            st.sampled_from(GLNS), purposes)
administrators = st.builds(lambda role, purpose: Principal(role=role, user_id=f"{role.lower()}-1",
                                                           purpose_of_use=purpose),
                           st.sampled_from(("DADM", "PADM")), purposes)
patients = st.builds(lambda spid, bound, purpose: Principal(role="PAT", user_id=spid, patient_spid=bound,
                                                            purpose_of_use=purpose),
                     st.sampled_from((SPID, OTHER_SPID)), st.sampled_from((None, SPID, OTHER_SPID)), purposes)
representatives = st.builds(lambda rep, bound, purpose: Principal(role="REP", user_id=rep, patient_spid=bound,
                                                                  purpose_of_use=purpose),
                            st.sampled_from(REPS), st.sampled_from((None, SPID)), purposes)
professionals = st.one_of(hcps, assistants, technical_users, administrators)
anyone = st.one_of(professionals, patients, representatives)


def permits(who: Principal, policies, action: str, level: str | None = "normal") -> bool:
    return decide(principal=who, patient_spid=SPID, action=action, confidentiality=level, policies=policies,
                  today=TODAY).permit


def everything(who: Principal, policies) -> dict[tuple[str, str], bool]:
    return {(action, level): permits(who, policies, action, level) for action in ACTIONS for level in LEVELS}


@given(who=professionals, policies=policy_sets)
def test_no_professional_ever_reads_a_secret_document(who, policies):
    assert not permits(who, policies, "read", "secret")


@given(who=st.one_of(hcps, assistants, technical_users), policies=policy_sets, data=st.data())
def test_a_block_in_force_always_wins(who, policies, data):
    blocked = data.draw(st.sampled_from(sorted({who.user_id, who.acting_for} - {None, "infomed-migration"})))
    block = Policy(policy_set_id=data.draw(uuids), template=301, patient_spid=SPID, rule=P + "exclusion-list",
                   subject_id=blocked, start=day(data.draw(st.one_of(st.none(), st.integers(-40, 0)))),
                   end=day(data.draw(st.one_of(st.none(), st.integers(0, 40)))))
    assert set(everything(who, [*policies, block]).values()) == {False}


expired_grants = a_policy(templates=(301, 302, 304), rules=GRANT_RULES, spids=(SPID,),
                          start=st.one_of(st.none(), st.integers(-80, -41)), end=st.integers(-40, -1))
unrelated = a_policy(templates=(201, 203, 303), spids=(SPID,))


@given(who=st.one_of(hcps, assistants), policies=st.lists(st.one_of(expired_grants, unrelated), max_size=8))
def test_an_expired_grant_never_permits_reading(who, policies):
    assert visible_levels(principal=who, patient_spid=SPID, policies=policies, today=TODAY) == frozenset()


@given(who=technical_users, policies=policy_sets)
def test_a_technical_user_never_reads(who, policies):
    assert visible_levels(principal=who, patient_spid=SPID, policies=policies, today=TODAY) == frozenset()


strangers_policies = st.lists(a_policy(templates=(201, 203, 301, 302, 303, 304), glns=STRANGER_GLNS,
                                       groups=STRANGER_GROUPS), max_size=8)


@given(gln=st.sampled_from(GLNS), group=st.sampled_from(GROUPS), others=strangers_policies, data=st.data())
def test_removing_a_grant_denies_the_next_decision(gln, group, others, data):
    who = Principal(role="HCP", user_id=gln, groups=(Group(group),), purpose_of_use="NORM")
    template = data.draw(st.sampled_from((301, 302, 304)))
    grant = Policy(policy_set_id=data.draw(uuids), template=template, patient_spid=SPID,
                   rule=P + data.draw(st.sampled_from(GRANT_RULES[template])),
                   subject_id={301: gln, 302: group, 304: gln}[template],
                   start=day(data.draw(st.one_of(st.none(), st.integers(-40, 0)))),
                   end=day(data.draw(st.integers(0, 40))))
    assert (permits(who, [*others, grant], "read"), permits(who, others, "read")) == (True, False)


@given(assistant=assistants, policies=policy_sets)
def test_an_assistant_never_exceeds_its_principal(assistant, policies):
    principal = Principal(role="HCP", user_id=assistant.acting_for, groups=assistant.groups,
                          purpose_of_use=assistant.purpose_of_use)
    allowed_assistant = {key for key, permit in everything(assistant, policies).items() if permit}
    allowed_principal = {key for key, permit in everything(principal, policies).items() if permit}
    assert allowed_assistant <= allowed_principal


@settings(max_examples=300)
@given(who=anyone, policies=policy_sets)
def test_visible_levels_agree_with_decide_for_every_level(who, policies):
    readable = {level for level in LEVELS if permits(who, policies, "read", level)}
    assert visible_levels(principal=who, patient_spid=SPID, policies=policies, today=TODAY) == readable


@given(who=anyone, policies=policy_sets)
def test_visible_levels_are_always_the_lowest_levels(who, policies):
    levels = visible_levels(principal=who, patient_spid=SPID, policies=policies, today=TODAY)
    assert levels in {frozenset(LEVELS[:n]) for n in range(len(LEVELS) + 1)}


@given(who=anyone, policies=policy_sets, foreign=st.lists(a_policy(spids=(OTHER_SPID,)), max_size=4))
def test_another_patients_policies_never_change_a_decision(who, policies, foreign):
    assert everything(who, [*policies, *foreign]) == everything(who, policies)
