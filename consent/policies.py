"""The patient's policy sets, one frozen value per CH:PPQm Consent / EPR XACML policy set.

A policy is kept as the few facts the templates let a patient choose (template, referenced policy set,
subject, validity) rather than as FHIR or XACML, so the decision point reads plain data and the wire
formats are mapped in one place (`consent.ppqm`).

Template rules enforced by `validate_policy` come from the official stack (ch-epr-adr-ppq
`docs/2_Relations.md`, CH EPR FHIR 5.0.0 PpqmConsentTemplate2xx/3xx profiles):

| template | rules | subject | validity |
|---|---|---|---|
| 201 | access-level:full | the patient's own SPID | none |
| 202 | access-level:normal / :restricted | none (all HCPs, EMER) | none |
| 203 | provide-level:normal / :restricted / :secret | none (all HCPs) | none |
| 301 | access-level:normal / :restricted / exclusion-list | GLN (check digit) | optional |
| 302 | access-level:normal / :restricted | group `urn:oid:…` | end required |
| 303 | access-level:full | representative id | optional (XACML; the FHIR profile forbids it) |
| 304 | access-level:delegation-and-normal / …-and-restricted | GLN (check digit) | end required |

A start date without an end date is refused for every template: the XACML templates create the start
`EnvironmentMatch` only inside an end-dated `Environments`, and PpqmConsent makes `period.end` 1..1.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date

from adapters.cara.identifier_syntax import is_gln, is_oid_urn, is_printable_id, is_spid, is_uuid_urn

RULE_PREFIX = "urn:e-health-suisse:2015:policies:"
FULL = RULE_PREFIX + "access-level:full"
NORMAL = RULE_PREFIX + "access-level:normal"
RESTRICTED = RULE_PREFIX + "access-level:restricted"
DELEGATION_NORMAL = RULE_PREFIX + "access-level:delegation-and-normal"
DELEGATION_RESTRICTED = RULE_PREFIX + "access-level:delegation-and-restricted"
EXCLUSION_LIST = RULE_PREFIX + "exclusion-list"
PROVIDE_NORMAL = RULE_PREFIX + "provide-level:normal"
PROVIDE_RESTRICTED = RULE_PREFIX + "provide-level:restricted"
PROVIDE_SECRET = RULE_PREFIX + "provide-level:secret"

TEMPLATES = (201, 202, 203, 301, 302, 303, 304)

ALLOWED_RULES: dict[int, frozenset[str]] = {
    201: frozenset({FULL}),
    202: frozenset({NORMAL, RESTRICTED}),
    203: frozenset({PROVIDE_NORMAL, PROVIDE_RESTRICTED, PROVIDE_SECRET}),
    301: frozenset({NORMAL, RESTRICTED, EXCLUSION_LIST}),
    302: frozenset({NORMAL, RESTRICTED}),
    303: frozenset({FULL}),
    304: frozenset({DELEGATION_NORMAL, DELEGATION_RESTRICTED}),
}
WITHOUT_PERIOD = frozenset({201, 202, 203})
END_REQUIRED = frozenset({302, 304})

_READ_LEVEL = {FULL: "full", NORMAL: "normal", RESTRICTED: "restricted",
               DELEGATION_NORMAL: "normal", DELEGATION_RESTRICTED: "restricted"}
_PROVIDE_LEVEL = {PROVIDE_NORMAL: "normal", PROVIDE_RESTRICTED: "restricted", PROVIDE_SECRET: "secret"}



@dataclass(frozen=True)
class Policy:
    """One patient policy set.

    subject_id: the SPID (201), a GLN (301, 304), a group OID `urn:oid:…` (302), a representative id
    (303), None for the templates addressed to every professional (202, 203).
    subject_name: local display only; CH:PPQm forbids names in the Consent, so it never travels.
    start / end: inclusive validity dates (XACML `date-less/greater-than-or-equal` on the current date).
    """

    policy_set_id: str
    template: int
    patient_spid: str
    rule: str
    subject_id: str | None = None
    subject_name: str | None = None
    start: date | None = None
    end: date | None = None

    @property
    def level(self) -> str | None:
        """Read level granted: 'normal', 'restricted' (= normal + restricted), 'full', or None."""
        return _READ_LEVEL.get(self.rule)

    @property
    def is_block(self) -> bool:
        """Exclusion list (301): denies this professional everything, over every grant."""
        return self.template == 301 and self.rule == EXCLUSION_LIST

    @property
    def is_grant(self) -> bool:
        """A professional's read grant: 301 or 302 with a read level, or 304 (read + delegation)."""
        return self.template in (301, 302, 304) and self.level in ("normal", "restricted")

    @property
    def can_delegate(self) -> bool:
        return self.template == 304

    @property
    def provide_level(self) -> str | None:
        """Minimum upload confidentiality (203 only)."""
        return _PROVIDE_LEVEL.get(self.rule) if self.template == 203 else None

    def in_force(self, today: date) -> bool:
        """Both ends inclusive; a policy without dates is always in force."""
        return (self.start is None or self.start <= today) and (self.end is None or today <= self.end)


@dataclass(frozen=True)
class Problem:
    """One broken template rule: the Policy field at fault (so PPQm can point into the Consent) and why."""

    field: str
    message: str


def is_valid_gln(value: str) -> bool:
    """GS1 GLN: 13 digits, the last one the mod-10 check digit (weights 1, 3, 1, … from the left)."""
    return is_gln(value)


def policy_problems(policy: Policy) -> list[Problem]:
    """Every template rule the policy breaks (empty when valid)."""
    problems: list[Problem] = []
    if not isinstance(policy.policy_set_id, str) or not is_uuid_urn(policy.policy_set_id):
        problems.append(Problem("policy_set_id", f"policy set id must be a urn:uuid, got {policy.policy_set_id!r}"))
    if not isinstance(policy.patient_spid, str) or not is_spid(policy.patient_spid):
        problems.append(Problem("patient_spid", f"patient EPR-SPID must be 18 digits, got {policy.patient_spid!r}"))
    if policy.template not in ALLOWED_RULES:
        expected = ", ".join(map(str, TEMPLATES))
        problems.append(Problem("template", f"unknown template {policy.template!r} (expected one of {expected})"))
        return problems
    template = policy.template
    if policy.rule not in ALLOWED_RULES[template]:
        allowed = ", ".join(sorted(ALLOWED_RULES[template]))
        problems.append(Problem("rule", f"template {template} does not allow policy rule {policy.rule!r} "
                                        f"(allowed: {allowed})"))
    problems += _subject_problems(policy)
    problems += _period_problems(policy)
    return problems


def validate_policy(policy: Policy) -> list[str]:
    """The messages of `policy_problems`; an empty list means the policy may be stored and enforced."""
    return [p.message for p in policy_problems(policy)]


@functools.lru_cache(maxsize=4096)
def is_enforceable(policy: Policy) -> bool:
    """No template rule broken. Asked at every decision for every policy, so remembered: a Policy
    is immutable, and the same ones are decided on again and again."""
    return not policy_problems(policy)


def _subject_problems(policy: Policy) -> list[Problem]:
    template, subject = policy.template, policy.subject_id
    if template in (202, 203):
        return [] if subject is None else [Problem("subject_id", f"template {template} addresses all "
                                                   f"professionals and takes no subject, got {subject!r}")]
    if not subject:
        kind = {201: "the patient's SPID", 301: "a GLN", 302: "a group OID", 303: "a representative id",
                304: "a GLN"}[template]
        return [Problem("subject_id", f"template {template} requires a subject: {kind}")]
    if template == 201 and subject != policy.patient_spid:
        return [Problem("subject_id", f"template 201 subject {subject!r} must be the patient's own SPID")]
    if template in (301, 304) and not is_valid_gln(subject):
        return [Problem("subject_id", f"template {template} subject {subject!r} is not a GLN "
                                      "(13 digits with a valid GS1 check digit)")]
    if template == 302 and not is_oid_urn(subject):
        return [Problem("subject_id", f"template 302 subject {subject!r} must be a group OID as urn:oid:…")]
    if template == 303 and not is_printable_id(subject):
        return [Problem("subject_id", f"template 303 representative id {subject!r} must be printable ASCII "
                                      "without spaces")]
    return []


def _period_problems(policy: Policy) -> list[Problem]:
    template, start, end = policy.template, policy.start, policy.end
    problems = []
    if template in WITHOUT_PERIOD and (start is not None or end is not None):
        problems.append(Problem("period", f"template {template} takes no start or end date"))
    if template in END_REQUIRED and end is None:
        problems.append(Problem("end", f"template {template} requires an end date"))
    if start is not None and end is None and template not in WITHOUT_PERIOD | END_REQUIRED:
        problems.append(Problem("end", "a start date needs an end date (only an end date may stand alone)"))
    if start is not None and end is not None and start > end:
        problems.append(Problem("period", f"start date {start.isoformat()} is after end date {end.isoformat()}"))
    return problems


def onboarding_policies(*, patient_spid: str, policy_set_ids: tuple[str, str, str]) -> tuple[Policy, ...]:
    """The bootstrap set a Policy Administrator submits when a patient opens the EPR.

    201 full access for the patient, 202 emergency access at the legal default (normal), 203 provide level
    normal. Emergency access exists only while a 202 policy exists (see `consent.pdp`), so the legal
    default must be written here, at onboarding, not assumed when 202 is missing.
    """
    full_id, emergency_id, provide_id = policy_set_ids
    return (
        Policy(policy_set_id=full_id, template=201, patient_spid=patient_spid, rule=FULL, subject_id=patient_spid),
        Policy(policy_set_id=emergency_id, template=202, patient_spid=patient_spid, rule=NORMAL),
        Policy(policy_set_id=provide_id, template=203, patient_spid=patient_spid, rule=PROVIDE_NORMAL),
    )
