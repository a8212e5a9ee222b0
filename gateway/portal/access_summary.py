"""Who has access now: what each of the patient's policies gives today, after blocks, end dates, the
emergency setting and the provide level.

Each answer comes from the policy decision point itself (`consent.pdp.visible_levels`, the function
every search is filtered by), asked for the professional, group or representative a policy names;
the page never re-reads the rules from the policies. So the summary cannot say a blocked professional
has access while a search would find nothing for them: it is the same decision.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

from consent import pdp
from consent.policies import Policy
from consent.principal import Group, Principal

# Stands for "a professional the patient's policies do not name": what everyone gets (in an emergency),
# or a member of a group with no policy of their own. Never a GLN (13 digits), so it matches no policy.
ANY_PROFESSIONAL = "any-professional"


@dataclass(frozen=True)
class Access:
    """One policy as it acts today. `levels`: the confidentiality levels it lets its subject see now
    (empty when it gives nothing today); `why_not`: blocked | ended | not-started | not-valid, or None."""

    policy: Policy
    who: str
    levels: frozenset[str]
    why_not: str | None = None

    @property
    def consent_id(self) -> str:
        return self.policy.policy_set_id.removeprefix("urn:uuid:")

    @property
    def level(self) -> str:
        """The highest level seen today: restricted, normal, full (a representative) or none."""
        if "secret" in self.levels:
            return "full"
        return "restricted" if "restricted" in self.levels else "normal" if self.levels else "none"


@dataclass(frozen=True)
class Summary:
    granted: tuple[Access, ...]  # professionals and groups who see something today
    without_effect: tuple[Access, ...]  # grants that give nothing today, and why
    blocks: tuple[Access, ...]
    representatives: tuple[Access, ...]
    emergency: frozenset[str]  # what any professional not blocked sees in an emergency
    provide_level: str  # the level new documents are filed at, at least

    def sees(self, level: str) -> list[str]:
        """Who (by name) sees a document of this level today, outside an emergency."""
        return [a.who for a in self.granted if level in a.levels]


def summarise(policies: list[Policy], *, spid: str, today: date, name_of: Callable[[str], str | None]) -> Summary:
    def named(policy: Policy) -> str:
        return name_of(policy.subject_id or "") or policy.subject_id or ""

    def levels(principal: Principal) -> frozenset[str]:
        return pdp.visible_levels(principal=principal, patient_spid=spid, policies=policies, today=today)

    granted, without_effect, blocks, representatives = [], [], [], []
    for policy in policies:
        if policy.template in (301, 304) and policy.is_grant:
            access = Access(policy, named(policy), levels(_professional(policy.subject_id)))
        elif policy.template == 302:
            access = Access(policy, named(policy), levels(_professional(ANY_PROFESSIONAL, group=policy.subject_id)))
        elif policy.is_block:
            blocks.append(Access(policy, named(policy), frozenset(), None if policy.in_force(today) else "ended"))
            continue
        elif policy.template == 303:
            rep = Principal(role="REP", user_id=policy.subject_id or "", patient_spid=spid)
            access = Access(policy, named(policy), levels(rep))
            representatives.append(access if access.levels else _why_not(access, policies, today))
            continue
        else:  # 201, 202, 203: the patient's own access, the emergency setting, the provide level
            continue
        # A grant's own level may be exceeded by another of the same subject: shown as what they see.
        (granted if access.levels else without_effect).append(access if access.levels
                                                              else _why_not(access, policies, today))
    emergency = levels(_professional(ANY_PROFESSIONAL, purpose="EMER"))
    return Summary(tuple(granted), tuple(without_effect), tuple(blocks), tuple(representatives), emergency,
                   pdp.provide_level(policies))


def _professional(gln: str | None, *, group: str | None = None, purpose: str = "NORM") -> Principal:
    return Principal(role="HCP", user_id=gln or ANY_PROFESSIONAL, purpose_of_use=purpose,
                     groups=(Group(id=group),) if group else ())


def _why_not(access: Access, policies: list[Policy], today: date) -> Access:
    policy = access.policy
    if policy.end is not None and policy.end < today:
        why = "ended"
    elif policy.start is not None and policy.start > today:
        why = "not-started"
    elif any(p.is_block and p.subject_id == policy.subject_id and p.in_force(today) for p in policies):
        why = "blocked"
    else:  # a grant breaking its template's rules counts for nothing (`is_enforceable`: fail closed)
        why = "not-valid"
    return Access(policy, access.who, frozenset(), why)
