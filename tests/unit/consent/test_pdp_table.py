"""Decision table: every template x role x confidentiality x purpose x period x block.

The patient holds exactly one policy of the template under test (plus, when blocked, an exclusion list
naming the professional GLN). The expectations are written out below, row by row, from the spec and the
official policy stack; the oracle only looks them up. It never calls the decision point's own helpers.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta

import pytest

from consent.errors import ProvideLevelViolation
from consent.pdp import apply_provide_level, decide, may_delegate, visible_levels
from consent.policies import Policy
from consent.principal import Group, Principal

TODAY = date(2025, 6, 15)
SPID = "761337610000000002"
GLN = "7600000000005"  # the healthcare professional (and the one the assistant / technical user act for)
ASSISTANT_GLN = "7601000000002"
OTHER_GLN = "7601000000019"
GROUP = "urn:oid:2.16.756.5.30.1.99.1"
REP_ID = "representative12345"
P = "urn:e-health-suisse:2015:policies:"

TEMPLATES = (201, 202, 203, 301, 302, 303, 304)
ROLES = ("PAT", "REP", "HCP", "ASS", "TCU", "DADM", "PADM")
LEVELS = ("normal", "restricted", "secret")
PURPOSES = ("NORM", "EMER", "AUTO")
PERIODS = {  # the one-day window proves both ends are inclusive
    "inside": (TODAY, TODAY),
    "before": (TODAY + timedelta(days=1), TODAY + timedelta(days=30)),
    "after": (TODAY - timedelta(days=30), TODAY - timedelta(days=1)),
}


def the_policy(template: int, period: str) -> Policy:
    start, end = PERIODS[period]
    return {
        201: Policy("urn:uuid:00000000-0000-4000-8000-000000000201", 201, SPID, P + "access-level:full", SPID),
        202: Policy("urn:uuid:00000000-0000-4000-8000-000000000202", 202, SPID, P + "access-level:restricted"),
        203: Policy("urn:uuid:00000000-0000-4000-8000-000000000203", 203, SPID, P + "provide-level:restricted"),
        301: Policy("urn:uuid:00000000-0000-4000-8000-000000000301", 301, SPID, P + "access-level:restricted",
                    GLN, start=start, end=end),
        302: Policy("urn:uuid:00000000-0000-4000-8000-000000000302", 302, SPID, P + "access-level:normal",
                    GROUP, start=start, end=end),
        303: Policy("urn:uuid:00000000-0000-4000-8000-000000000303", 303, SPID, P + "access-level:full",
                    REP_ID, start=start, end=end),
        304: Policy("urn:uuid:00000000-0000-4000-8000-000000000304", 304, SPID,
                    P + "access-level:delegation-and-normal", GLN, start=start, end=end),
    }[template]


BLOCK = Policy("urn:uuid:00000000-0000-4000-8000-00000000b10c", 301, SPID, P + "exclusion-list", GLN)


def principal(role: str, purpose: str) -> Principal:
    return {
        "PAT": Principal(role="PAT", user_id=SPID, patient_spid=SPID, purpose_of_use=purpose),
        "REP": Principal(role="REP", user_id=REP_ID, patient_spid=SPID, purpose_of_use=purpose),
        "HCP": Principal(role="HCP", user_id=GLN, groups=(Group(GROUP),), purpose_of_use=purpose),
        "ASS": Principal(role="ASS", user_id=ASSISTANT_GLN, acting_for=GLN, groups=(Group(GROUP),),
                         purpose_of_use=purpose),
        "TCU": Principal(role="TCU", user_id="infomed-migration", acting_for=GLN, purpose_of_use=purpose),
        "DADM": Principal(role="DADM", user_id="dadm-1", purpose_of_use=purpose),
        "PADM": Principal(role="PADM", user_id="padm-1", purpose_of_use=purpose),
    }[role]


# ---- the oracle: explicit expectations ------------------------------------------------------------
NONE: frozenset[str] = frozenset()
N = frozenset({"normal"})
R = frozenset({"restricted"})
NR = frozenset({"normal", "restricted"})
ALL = frozenset(LEVELS)


@dataclass(frozen=True)
class Expect:
    read: tuple[frozenset[str], frozenset[str], frozenset[str]]  # readable levels for NORM, EMER, AUTO
    write: tuple[frozenset[str], frozenset[str], frozenset[str]]  # writable levels for NORM, EMER, AUTO
    manage: bool
    audit: bool


NOTHING = Expect((NONE, NONE, NONE), (NONE, NONE, NONE), False, False)
PATIENT = Expect((ALL, ALL, ALL), (ALL, ALL, ALL), True, True)
PRO_WRITE = (NR, NONE, NR)            # professionals: no emergency writes, no secret at provide level normal
PRO_WRITE_203 = (R, NONE, R)          # provide level restricted: restricted only
TCU_WRITE = (NONE, NONE, NR)          # technical users write with AUTO only
TCU_WRITE_203 = (NONE, NONE, R)
NO_READ = (NONE, NONE, NONE)
PADM = Expect(NO_READ, (NONE, NONE, NONE), True, False)

# (role, template in force) -> expectation; template None = no policy in force at all.
ROWS: dict[tuple[str, int | None], Expect] = {
    ("PAT", None): PATIENT, ("PAT", 201): PATIENT, ("PAT", 202): PATIENT, ("PAT", 203): PATIENT,
    ("PAT", 301): PATIENT, ("PAT", 302): PATIENT, ("PAT", 303): PATIENT, ("PAT", 304): PATIENT,

    ("REP", None): NOTHING, ("REP", 201): NOTHING, ("REP", 202): NOTHING, ("REP", 203): NOTHING,
    ("REP", 301): NOTHING, ("REP", 302): NOTHING, ("REP", 303): PATIENT, ("REP", 304): NOTHING,

    ("HCP", None): Expect(NO_READ, PRO_WRITE, False, False),
    ("HCP", 201): Expect(NO_READ, PRO_WRITE, False, False),
    ("HCP", 202): Expect((NONE, NR, NONE), PRO_WRITE, False, False),
    ("HCP", 203): Expect(NO_READ, PRO_WRITE_203, False, False),
    ("HCP", 301): Expect((NR, NR, NONE), PRO_WRITE, False, False),
    ("HCP", 302): Expect((N, N, NONE), PRO_WRITE, False, False),
    ("HCP", 303): Expect(NO_READ, PRO_WRITE, False, False),
    ("HCP", 304): Expect((N, N, NONE), PRO_WRITE, False, False),

    ("ASS", None): Expect(NO_READ, PRO_WRITE, False, False),
    ("ASS", 201): Expect(NO_READ, PRO_WRITE, False, False),
    ("ASS", 202): Expect((NONE, NR, NONE), PRO_WRITE, False, False),
    ("ASS", 203): Expect(NO_READ, PRO_WRITE_203, False, False),
    ("ASS", 301): Expect((NR, NR, NONE), PRO_WRITE, False, False),
    ("ASS", 302): Expect((N, N, NONE), PRO_WRITE, False, False),
    ("ASS", 303): Expect(NO_READ, PRO_WRITE, False, False),
    ("ASS", 304): Expect((N, N, NONE), PRO_WRITE, False, False),

    ("TCU", None): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 201): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 202): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 203): Expect(NO_READ, TCU_WRITE_203, False, False),
    ("TCU", 301): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 302): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 303): Expect(NO_READ, TCU_WRITE, False, False),
    ("TCU", 304): Expect(NO_READ, TCU_WRITE, False, False),

    ("DADM", None): NOTHING, ("DADM", 201): NOTHING, ("DADM", 202): NOTHING, ("DADM", 203): NOTHING,
    ("DADM", 301): NOTHING, ("DADM", 302): NOTHING, ("DADM", 303): NOTHING, ("DADM", 304): NOTHING,

    ("PADM", None): PADM, ("PADM", 201): PADM, ("PADM", 202): PADM, ("PADM", 203): PADM,
    ("PADM", 301): PADM, ("PADM", 302): PADM, ("PADM", 303): PADM, ("PADM", 304): PADM,
}
# An exclusion list naming the professional's GLN: that professional and anyone acting for them get nothing.
BLOCKED = {"HCP": NOTHING, "ASS": NOTHING, "TCU": NOTHING}
WITHOUT_PERIOD = (201, 202, 203)
EMERGENCY_NOTIFIES = ("HCP", "ASS")  # every permit a professional gets with purpose EMER notifies the patient


def expected_row(template: int, role: str, period: str, blocked: bool) -> Expect:
    in_force = template in WITHOUT_PERIOD or period == "inside"
    row = ROWS[(role, template if in_force else None)]
    return BLOCKED.get(role, row) if blocked else row


def expected(template, role, level, purpose, period, blocked) -> dict:
    row = expected_row(template, role, period, blocked)
    index = PURPOSES.index(purpose)
    read = level in row.read[index]
    return {"read": read, "notify": read and purpose == "EMER" and role in EMERGENCY_NOTIFIES,
            "write": level in row.write[index], "manage-policies": row.manage, "read-audit": row.audit}


# ---- the table ------------------------------------------------------------------------------------
CASES = list(itertools.product(TEMPLATES, ROLES, LEVELS, PURPOSES, PERIODS, (False, True)))


def case_id(case) -> str:
    template, role, level, purpose, period, blocked = case
    return f"{template}-{role}-{level}-{purpose}-{period}-{'blocked' if blocked else 'free'}"


def outcome(template, role, level, purpose, period, blocked) -> dict:
    policies = [the_policy(template, period)] + [BLOCK] * blocked
    who = principal(role, purpose)

    def ask(action):
        return decide(principal=who, patient_spid=SPID, action=action, confidentiality=level, policies=policies,
                      today=TODAY)

    read = ask("read")
    return {"read": read.permit, "notify": "notify-patient" in read.obligations, "write": ask("write").permit,
            "manage-policies": ask("manage-policies").permit, "read-audit": ask("read-audit").permit}


def test_the_table_covers_every_combination():
    assert len(CASES) == 7 * 7 * 3 * 3 * 3 * 2


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_decision(case):
    assert outcome(*case) == expected(*case)


VIEW_CASES = list(itertools.product(TEMPLATES, ROLES, PURPOSES, PERIODS, (False, True)))


@pytest.mark.parametrize("template, role, purpose, period, blocked", VIEW_CASES)
def test_visible_levels_are_the_readable_levels(template, role, purpose, period, blocked):
    policies = [the_policy(template, period)] + [BLOCK] * blocked
    levels = visible_levels(principal=principal(role, purpose), patient_spid=SPID, policies=policies, today=TODAY)
    assert levels == expected_row(template, role, period, blocked).read[PURPOSES.index(purpose)]


def test_no_policy_at_all_leaves_professionals_nothing_to_read_and_the_patient_everything():
    seen = {role: visible_levels(principal=principal(role, "EMER"), patient_spid=SPID, policies=[], today=TODAY)
            for role in ROLES}
    assert seen == {"PAT": ALL, "REP": NONE, "HCP": NONE, "ASS": NONE, "TCU": NONE, "DADM": NONE, "PADM": NONE}


def test_a_token_bound_to_another_patient_reads_nothing():
    who = Principal(role="HCP", user_id=GLN, patient_spid="761337610000000019")
    policies = [the_policy(301, "inside")]
    assert visible_levels(principal=who, patient_spid=SPID, policies=policies, today=TODAY) == NONE


def test_an_assistant_on_the_exclusion_list_is_blocked_though_its_principal_is_not():
    block = Policy("urn:uuid:00000000-0000-4000-8000-00000000b10d", 301, SPID, P + "exclusion-list", ASSISTANT_GLN)
    policies = [the_policy(301, "inside"), block]
    assert visible_levels(principal=principal("ASS", "NORM"), patient_spid=SPID, policies=policies,
                          today=TODAY) == NONE


# ---- provide level (template 203) ------------------------------------------------------------------
def provide(rule: str) -> list[Policy]:
    return [Policy("urn:uuid:00000000-0000-4000-8000-000000000203", 203, SPID, P + rule)]


@pytest.mark.parametrize("requested, policies, mode, stored", [
    ("normal", [], "raise", "normal"),
    ("restricted", [], "reject", "restricted"),
    ("secret", [], "reject", "secret"),
    ("normal", provide("provide-level:normal"), "reject", "normal"),
    ("normal", provide("provide-level:restricted"), "raise", "restricted"),
    ("restricted", provide("provide-level:restricted"), "reject", "restricted"),
    ("secret", provide("provide-level:restricted"), "reject", "secret"),
    ("normal", provide("provide-level:secret"), "raise", "secret"),
    ("restricted", provide("provide-level:secret"), "raise", "secret"),
])
def test_an_upload_is_raised_to_the_provide_level_and_never_lowered(requested, policies, mode, stored):
    assert apply_provide_level(requested=requested, policies=policies, mode=mode) == stored


@pytest.mark.parametrize("requested, rule, minimum", [
    ("normal", "provide-level:restricted", "restricted"),
    ("normal", "provide-level:secret", "secret"),
    ("restricted", "provide-level:secret", "secret"),
])
def test_in_reject_mode_an_upload_below_the_provide_level_is_refused(requested, rule, minimum):
    with pytest.raises(ProvideLevelViolation) as refused:
        apply_provide_level(requested=requested, policies=provide(rule), mode="reject")
    assert (refused.value.requested, refused.value.minimum) == (requested, minimum)


# ---- delegation (template 304 -> a 301 for another professional) -----------------------------------
RIGHT = Policy("urn:uuid:00000000-0000-4000-8000-000000000304", 304, SPID, P + "access-level:delegation-and-normal",
               GLN, start=TODAY - timedelta(days=10), end=TODAY + timedelta(days=20))
D = timedelta(days=1)


def grant(rule="access-level:normal", subject=OTHER_GLN, start=TODAY, end=TODAY + 20 * D, template=301) -> Policy:
    return Policy("urn:uuid:00000000-0000-4000-8000-0000000de1e9", template, SPID, P + rule, subject,
                  start=start, end=end)


HCP = Principal(role="HCP", user_id=GLN)
DELEGATIONS = {
    "within the right": (HCP, grant(), [RIGHT], True),
    "same window as the right": (HCP, grant(start=TODAY - 10 * D), [RIGHT], True),
    "level above the right": (HCP, grant(rule="access-level:restricted"), [RIGHT], False),
    "ends after the right": (HCP, grant(end=TODAY + 21 * D), [RIGHT], False),
    "starts before the right": (HCP, grant(start=TODAY - 11 * D), [RIGHT], False),
    "no start while the right has one": (HCP, grant(start=None), [RIGHT], False),
    "no end date": (HCP, grant(start=None, end=None), [RIGHT], False),
    "an exclusion list": (HCP, grant(rule="exclusion-list"), [RIGHT], False),
    "a group grant": (HCP, grant(subject=GROUP, template=302), [RIGHT], False),
    "to themselves": (HCP, grant(subject=GLN), [RIGHT], False),
    "without a right": (HCP, grant(), [], False),
    "with an expired right": (HCP, grant(), [grant(template=304, rule="access-level:delegation-and-normal",
                                                    subject=GLN, start=TODAY - 9 * D, end=TODAY - D)], False),
    "while blocked": (HCP, grant(), [RIGHT, BLOCK], False),
    "an invalid policy": (HCP, grant(template=302, subject=GROUP, end=None, start=None), [RIGHT], False),
    "by the patient": (principal("PAT", "NORM"), grant(rule="access-level:restricted"), [], True),
    "by a representative with a 303": (principal("REP", "NORM"), grant(), [the_policy(303, "inside")], True),
    "by a representative without one": (principal("REP", "NORM"), grant(), [], False),
    "by the policy administrator": (principal("PADM", "NORM"), grant(), [], True),
    "by an assistant": (principal("ASS", "NORM"), grant(), [RIGHT], False),
    "by a document administrator": (principal("DADM", "NORM"), grant(), [RIGHT], False),
}


@pytest.mark.parametrize("who, new_policy, policies, permit", DELEGATIONS.values(), ids=DELEGATIONS.keys())
def test_delegation(who, new_policy, policies, permit):
    assert may_delegate(principal=who, new_policy=new_policy, policies=policies, today=TODAY).permit is permit
