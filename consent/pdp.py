"""The policy decision point: may this principal do this to this patient's record, today?

Deny by default, deny overrides. The rules follow the official EPR policy stack (ch-epr-adr-ppq,
`docs/2_Relations.md` and `docs/3_UseCases.md`) and the project's spec; where a choice had to be made it
is written here.

Reading (`read`, one confidentiality level: normal | restricted | secret)
- PAT reads all of their own record. REP reads all of it while a 303 naming them is in force.
- Professionals never read secret. HCP read with purpose NORM or EMER only (base policies 01-03 allow
  no other purpose, which is also what keeps TCU out). The level is the highest of the grants in force
  naming them: 301/304 by GLN, 302 by a group in `principal.groups`; 304 counts with its level
  (2_Relations: "same as 101/102, plus delegation"). Grants apply with NORM and EMER alike.
- Emergency access (EMER) adds the 202 level to the grants. **Switched off = no 202 policy**: that is
  how the official use case UC202-3 disables it (the 202 policy is deleted), and the PPQm value set of
  202 has no "off" code, so a dedicated rule could not travel as a valid Consent. Read the other way
  ("no 202 = normal"), a conformant patient portal deleting 202 would leave emergency access on. The
  legal default (normal) is therefore written at onboarding: `consent.policies.onboarding_policies`.
  Every permit given to a professional acting with purpose EMER carries `notify-patient`.
- ASS and TCU act for the HCP whose GLN is `principal.acting_for` and get at most that HCP's rights;
  an exclusion list naming either the delegate or the HCP denies. TCU never reads.
- DADM reads nothing here (metadata administration only), PADM only manages policies. Note: the
  official base policy set 111 does let DADM read and write every level; we stay closed until asked.

Metadata (CH:MHD-1, see gateway/exchanges/metadata.py)
- `change-confidentiality`: the patient's right (EPRA Art. 9): PAT, and REP under a 303 in force.
  Professionals and administrators are refused (an HCP sets the level at upload, within 203).
- `administer-metadata`: DADM only, with purpose NORM: correct metadata and delete entries, without
  reading the documents themselves.

Writing (`write`, the confidentiality the document will be stored with, after `apply_provide_level`)
- PAT and REP (with 303) may write at any level.
- HCP/ASS (purpose NORM, AUTO or DICOM_AUTO) and TCU (AUTO or DICOM_AUTO, with a responsible HCP) may
  write for any patient unless blocked, but only at the levels template 203 lets professionals use:
  provide level normal -> normal, restricted; restricted -> restricted; secret -> secret (base policy
  sets 108, 107, 109). Hence no emergency-mode writes and no secret uploads unless the patient chose
  provide level secret.

Policies of other patients are ignored; grants that break a template rule are ignored (fail closed);
exclusion lists are honoured whenever they name the caller and are in force. A token bound to a patient
(`principal.patient_spid`) acts only on that patient.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date

from adapters.cara.vocabulary import CONFIDENTIALITY_RANK
from consent.errors import ProvideLevelViolation
from consent.policies import NORMAL, RESTRICTED, Policy, is_enforceable, validate_policy
from consent.principal import Principal
from consent.roles import PROFESSIONAL_AUTHORS, TECHNICAL_PURPOSES

LEVELS = ("normal", "restricted", "secret")
ACTIONS = ("read", "write", "manage-policies", "read-audit", "change-confidentiality", "administer-metadata")
NOTIFY_PATIENT = "notify-patient"
READ_PURPOSES = frozenset({"NORM", "EMER"})
PROFESSIONAL_WRITE_PURPOSES = frozenset({"NORM", "AUTO", "DICOM_AUTO"})
# Levels a professional may file a document at, per provide level (base policy sets 108, 107, 109).
WRITABLE = {"normal": ("normal", "restricted"), "restricted": ("restricted",), "secret": ("secret",)}


@dataclass(frozen=True)
class Decision:
    permit: bool
    reason: str
    obligations: tuple[str, ...] = ()


def _deny(reason: str) -> Decision:
    return Decision(False, reason)


def decide(*, principal: Principal, patient_spid: str, action: str, confidentiality: str | None = None,
           policies: Sequence[Policy], today: date) -> Decision:
    """One access decision. `confidentiality` is required for read and write, ignored otherwise."""
    if action not in ACTIONS:
        return _deny(f"unknown action {action!r}")
    if action in ("read", "write") and confidentiality not in LEVELS:
        return _deny(f"unknown confidentiality {confidentiality!r}")
    if principal.patient_spid is not None and principal.patient_spid != patient_spid:
        return _deny("the token is bound to another patient")
    mine = [p for p in policies if p.patient_spid == patient_spid]
    role = principal.role
    if action == "administer-metadata":
        if role == "DADM" and principal.purpose_of_use == "NORM":
            return Decision(True, "document administrator")
        return _deny("only a document administrator (purpose NORM) administers metadata")
    if role == "PAT":
        if principal.user_id == patient_spid or principal.patient_spid == patient_spid:
            return Decision(True, "the patient's own record")
        return _deny("a patient acts only on their own record")
    if role == "REP":
        mandate = _representation(principal.user_id, mine, today)
        if mandate is None:
            return _deny(f"no representative policy (303) in force for {principal.user_id}")
        return Decision(True, f"representative under policy set {mandate.policy_set_id}")
    if role in PROFESSIONAL_AUTHORS:
        return _professional(principal, action, confidentiality, mine, today)
    if role == "PADM":
        if action == "manage-policies":
            return Decision(True, "policy administrator")
        return _deny("a policy administrator only manages policies")
    if role == "DADM":
        return _deny("a document administrator maintains metadata and does not read, write or manage policies")
    return _deny(f"unknown role {role!r}")


def visible_levels(*, principal: Principal, patient_spid: str, policies: Sequence[Policy],
                   today: date) -> frozenset[str]:
    """The confidentiality levels a search may return: exactly those `decide(read)` permits.

    Obligations (notify-patient on emergency access) are not carried here: call `decide` for them.
    """
    return frozenset(level for level in LEVELS
                     if decide(principal=principal, patient_spid=patient_spid, action="read",
                               confidentiality=level, policies=policies, today=today).permit)


def policies_for_merged(*, owner_spid: str, policies: Iterable[Policy]) -> list[Policy]:
    """The policies a document of `owner_spid` is decided under when its patient is part of a merged
    record (`policies`: those of every patient of the record). A merge never widens access:

    - the owner's own policies apply as they are (their grants, 201, 202, 303: for their documents only);
    - every other patient's restrictions apply too, as if the owner had written them: exclusion lists
      (a block in either record wins, deny-overrides) and provide levels (the most restrictive wins);
    - another patient's grants never count for the owner's documents.

    With one patient in the record this is that patient's policies, unchanged."""
    result = []
    for policy in policies:
        if policy.patient_spid == owner_spid:
            result.append(policy)
        elif policy.is_block or policy.template == 203:
            result.append(replace(policy, patient_spid=owner_spid))
    return result


def provide_level(policies: Iterable[Policy]) -> str:
    """Minimum upload confidentiality from 203 (the most restrictive if several); normal without one."""
    levels = [p.provide_level for p in policies if p.provide_level is not None]
    return max(levels, key=CONFIDENTIALITY_RANK.__getitem__, default="normal")


def apply_provide_level(*, requested: str, policies: Iterable[Policy], mode: str) -> str:
    """The confidentiality to store an upload with: raised to the provide level, never lowered.

    mode "raise" returns the provide level for an upload below it; mode "reject" raises
    ProvideLevelViolation instead.
    """
    if requested not in LEVELS:
        raise ValueError(f"unknown confidentiality {requested!r}")
    if mode not in ("raise", "reject"):
        raise ValueError(f"unknown provide-level mode {mode!r} (raise or reject)")
    minimum = provide_level(policies)
    if CONFIDENTIALITY_RANK[requested] >= CONFIDENTIALITY_RANK[minimum]:
        return requested
    if mode == "reject":
        raise ProvideLevelViolation(requested=requested, minimum=minimum)
    return minimum


def may_delegate(*, principal: Principal, new_policy: Policy, policies: Sequence[Policy],
                 today: date) -> Decision:
    """May this principal submit `new_policy`? The one check for every policy submission.

    A healthcare professional may only delegate (UC301-5): a 301 read grant without delegation right,
    to another professional, at most the level of a 304 of theirs in force, ending no later than it and,
    when the 304 has a start date, starting no earlier (the 304 template's policy-attribute matches).
    Every other role is answered by `decide(action="manage-policies")`.
    """
    problems = validate_policy(new_policy)
    if problems:
        return _deny("invalid policy: " + "; ".join(problems))
    spid = new_policy.patient_spid
    if principal.role != "HCP":
        return decide(principal=principal, patient_spid=spid, action="manage-policies", policies=policies,
                      today=today)
    if principal.patient_spid is not None and principal.patient_spid != spid:
        return _deny("the token is bound to another patient")
    mine = [p for p in policies if p.patient_spid == spid]
    if _blocked({principal.user_id}, mine, today):
        return _deny(f"blocked: the patient's exclusion list names {principal.user_id}")
    if new_policy.template != 301 or new_policy.rule not in (NORMAL, RESTRICTED):
        return _deny("a professional delegates only a 301 read grant (normal or restricted)")
    if new_policy.subject_id == principal.user_id:
        return _deny("a professional cannot delegate to themselves")
    rights = [p for p in mine if p.can_delegate and p.subject_id == principal.user_id and p.in_force(today)
              and is_enforceable(p)]
    if not rights:
        return _deny(f"no delegation right (304) in force for {principal.user_id}")
    for right in rights:
        if _within(new_policy, right):
            return Decision(True, f"delegation under policy set {right.policy_set_id}")
    return _deny("the delegated grant exceeds the delegation right's level or validity")


def _within(new: Policy, right: Policy) -> bool:
    level_ok = CONFIDENTIALITY_RANK[new.level] <= CONFIDENTIALITY_RANK[right.level]
    end_ok = new.end is not None and right.end is not None and new.end <= right.end
    start_ok = right.start is None or (new.start is not None and new.start >= right.start)
    return level_ok and end_ok and start_ok


def _representation(rep_id: str, policies: Sequence[Policy], today: date) -> Policy | None:
    return next((p for p in policies if p.template == 303 and p.subject_id == rep_id and p.in_force(today)
                 and is_enforceable(p)), None)


def _blocked(identities: set[str], policies: Sequence[Policy], today: date) -> bool:
    return any(p.is_block and p.subject_id in identities and p.in_force(today) for p in policies)


def _professional(principal: Principal, action: str, level: str | None, policies: Sequence[Policy],
                  today: date) -> Decision:
    role = principal.role
    gln = principal.user_id if role == "HCP" else principal.acting_for
    if not gln:
        return _deny(f"{role} must act for a responsible healthcare professional (principal_id)")
    identities = {principal.user_id, gln}
    if _blocked(identities, policies, today):
        return _deny(f"blocked: the patient's exclusion list names {' or '.join(sorted(identities))}")
    purpose = principal.purpose_of_use
    if action == "write":
        allowed_purposes = TECHNICAL_PURPOSES if role == "TCU" else PROFESSIONAL_WRITE_PURPOSES
        if purpose not in allowed_purposes:
            return _deny(f"{role} cannot write with purpose {purpose}")
        minimum = provide_level(policies)
        if level not in WRITABLE[minimum]:
            return _deny(f"with provide level {minimum}, professionals file documents only as "
                         f"{' or '.join(WRITABLE[minimum])}")
        return Decision(True, f"{role} writes for the responsible professional {gln}")
    if action != "read":
        return _deny(f"{role} cannot {action} (professionals change policies only through may_delegate)")
    if role == "TCU":
        return _deny("technical users may write, never read")
    if level == "secret":
        return _deny("secret documents are for the patient and their representatives only")
    if purpose not in READ_PURPOSES:
        return _deny(f"purpose {purpose} does not allow reading")
    return _professional_read(principal, gln, level, policies, today)


def _professional_read(principal: Principal, gln: str, level: str, policies: Sequence[Policy],
                       today: date) -> Decision:
    groups = {g.id.lower() for g in principal.groups}
    granted = [p for p in policies if p.is_grant and p.in_force(today) and is_enforceable(p)
               and ((p.template in (301, 304) and p.subject_id == gln)
                    or (p.template == 302 and p.subject_id.lower() in groups))]
    emergency = principal.purpose_of_use == "EMER"
    if emergency:
        granted += [p for p in policies if p.template == 202 and is_enforceable(p)]
    obligations = (NOTIFY_PATIENT,) if emergency else ()
    if not granted:
        why = "no grant in force and emergency access is switched off (no 202 policy)" if emergency \
            else f"no grant in force for {gln} or its groups"
        return _deny(why)
    best = max(granted, key=lambda p: CONFIDENTIALITY_RANK[p.level])
    if CONFIDENTIALITY_RANK[level] > CONFIDENTIALITY_RANK[best.level]:
        return _deny(f"{level} documents exceed the {best.level} level granted")
    source = "emergency access (202)" if best.template == 202 else f"template {best.template} grant"
    return Decision(True, f"{source} {best.policy_set_id} allows {best.level}", obligations)
