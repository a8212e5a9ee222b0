"""Who may see my record: the page's forms turned into one policy change each, and the plain-words
explanation shown before it is saved.

A form is read twice: once for the preview (the explanation, nothing stored), once when the patient
confirms (the same fields, checked again: the preview is never trusted). Every change is then one
PPQ-3 exchange through `gateway.exchanges.policies` as a FHIR client would send it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any

from adapters.cara.dates import InvalidDate, parse_full_date
from adapters.cara.identifier_syntax import is_oid_urn
from consent import policies as rules
from consent.policies import Policy, is_valid_gln
from consent.ppqm import policy_from_consent
from gateway.portal.directory import Directory
from gateway.pages.i18n import N_

ACTIONS = ("grant-professional", "grant-group", "block", "emergency", "provide-level", "representative", "revoke")


@dataclass(frozen=True)
class Plan:
    """One change: `method` POST (new policy), PUT (replace `consent_id`) or DELETE (`consent_id`)."""

    method: str
    policy: Policy | None
    consent_id: str | None
    explanation: tuple[str, dict[str, str]]  # a catalogue message and its values


class FormProblem(ValueError):
    """A form refused: the catalogue message (and its values) and the field it is about, where the page
    shows it (`templates/_forms.html`)."""

    def __init__(self, message: str, field: str, **values: object):
        super().__init__(message)
        self.message = message
        self.field = field
        self.values = values


def current_policies(consent_bundle: dict[str, Any]) -> list[Policy]:
    """The policies of a PPQ-5 answer."""
    return [policy_from_consent(entry["resource"]) for entry in consent_bundle.get("entry", [])]


def consent_id(policy: Policy) -> str:
    return policy.policy_set_id.removeprefix("urn:uuid:")


def plan(form: dict[str, str], *, spid: str, policies: list[Policy], today: date, directory: Directory) -> Plan:
    """The change a form asks for, or FormProblem naming the field at fault. The explanation's values
    are the names the page shows and dates (formatted in the page's language where shown)."""
    action = form.get("action", "")
    if action not in ACTIONS:
        raise FormProblem(N_("Choose what you want to change."), "action")
    return _PLANNERS[action](form, spid, policies, today, directory)


def _grant_professional(form, spid, policies, today, directory) -> Plan:
    gln = (form.get("gln") or form.get("directory_gln") or "").strip()
    if not is_valid_gln(gln):
        raise FormProblem(N_("A GLN has 13 digits and a valid check digit: please check the number."), "gln")
    level = _level(form)
    end = _date(form.get("end"), "end", today, required=False)
    who = directory.name_of(gln) or gln
    existing = _find(policies, 301, gln, block=False)
    policy = Policy(policy_set_id=existing.policy_set_id if existing else _new_id(), template=301, patient_spid=spid,
                    rule=rules.RESTRICTED if level == "restricted" else rules.NORMAL, subject_id=gln, end=end)
    message = {("restricted", True): N_("%(who)s will see your normal and restricted documents until %(end)s."),
               ("restricted", False): N_("%(who)s will see your normal and restricted documents, until you revoke it."),
               ("normal", True): N_("%(who)s will see your normal documents, not the restricted or secret ones, "
                                    "until %(end)s."),
               ("normal", False): N_("%(who)s will see your normal documents, not the restricted or secret ones, "
                                     "until you revoke it.")}[(level, end is not None)]
    return Plan("PUT" if existing else "POST", policy, consent_id(existing) if existing else None,
                (message, {"who": who, "end": end}))


def _grant_group(form, spid, policies, today, directory) -> Plan:
    group = (form.get("group") or "").strip()
    if not is_oid_urn(group):
        raise FormProblem(N_("Choose a group from the list (its identifier starts with urn:oid:)."), "group")
    level = _level(form)
    end = _date(form.get("end"), "end", today, required=True)
    existing = _find(policies, 302, group, block=False)
    policy = Policy(policy_set_id=existing.policy_set_id if existing else _new_id(), template=302, patient_spid=spid,
                    rule=rules.RESTRICTED if level == "restricted" else rules.NORMAL, subject_id=group, end=end)
    message = (N_("Every member of the group “%(who)s” will see your normal and restricted documents until %(end)s.")
               if level == "restricted" else
               N_("Every member of the group “%(who)s” will see your normal documents until %(end)s."))
    return Plan("PUT" if existing else "POST", policy, consent_id(existing) if existing else None,
                (message, {"who": directory.name_of(group) or group, "end": end}))


def _block(form, spid, policies, today, directory) -> Plan:
    gln = (form.get("gln") or form.get("directory_gln") or "").strip()
    if not is_valid_gln(gln):
        raise FormProblem(N_("A GLN has 13 digits and a valid check digit: please check the number."), "gln")
    if _find(policies, 301, gln, block=True):
        raise FormProblem(N_("This professional is already blocked."), "gln")
    policy = Policy(policy_set_id=_new_id(), template=301, patient_spid=spid, rule=rules.EXCLUSION_LIST, subject_id=gln)
    return Plan("POST", policy, None,
                (N_("%(who)s will see nothing of your record, not even in an emergency, whatever else you allowed."),
                 {"who": directory.name_of(gln) or gln}))


def _emergency(form, spid, policies, today, directory) -> Plan:
    choice = form.get("emergency", "")
    if choice not in ("off", "normal", "restricted"):
        raise FormProblem(N_("Choose off, normal or restricted."), "emergency")
    existing = next((p for p in policies if p.template == 202), None)
    if choice == "off":
        if existing is None:
            raise FormProblem(N_("Emergency access is already off."), "emergency")
        return Plan("DELETE", None, consent_id(existing),
                    (N_("In an emergency, no professional will be able to see your record without your permission."), {}))
    policy = Policy(policy_set_id=existing.policy_set_id if existing else _new_id(), template=202, patient_spid=spid,
                    rule=rules.RESTRICTED if choice == "restricted" else rules.NORMAL)
    message = (N_("In an emergency, any professional may see your normal and restricted documents; you will be "
                  "told each time.") if choice == "restricted" else
               N_("In an emergency, any professional may see your normal documents; you will be told each time."))
    return Plan("PUT" if existing else "POST", policy, consent_id(existing) if existing else None, (message, {}))


def _provide_level(form, spid, policies, today, directory) -> Plan:
    choice = form.get("provide_level", "")
    rule = {"normal": rules.PROVIDE_NORMAL, "restricted": rules.PROVIDE_RESTRICTED,
            "secret": rules.PROVIDE_SECRET}.get(choice)
    if rule is None:
        raise FormProblem(N_("Choose normal, restricted or secret."), "provide_level")
    existing = next((p for p in policies if p.template == 203), None)
    policy = Policy(policy_set_id=existing.policy_set_id if existing else _new_id(), template=203, patient_spid=spid,
                    rule=rule)
    message = {"normal": N_("New documents will be filed as normal, unless their author chooses restricted."),
               "restricted": N_("New documents will be filed as restricted at least: only the professionals you "
                                "allowed restricted access will see them."),
               "secret": N_("New documents will be filed as secret: only you and your representatives will see "
                            "them.")}
    return Plan("PUT" if existing else "POST", policy, consent_id(existing) if existing else None,
                (message[choice], {}))


def _representative(form, spid, policies, today, directory) -> Plan:
    representative = (form.get("representative") or "").strip()
    if not representative or any(c.isspace() for c in representative) or len(representative) > 64:
        raise FormProblem(N_("Enter the representative's identifier (without spaces)."), "representative")
    # Only an id the community enrolled (its register, see `directory`): the page must be able to say
    # who it is before the patient hands over their whole record.
    person = directory.representative(representative)
    if person is None:
        raise FormProblem(N_("No representative is registered in this community under this identifier. "
                             "Please check it with your representative."), "representative")
    end = _date(form.get("end"), "end", today, required=False)
    if _find(policies, 303, representative, block=False):
        raise FormProblem(N_("This person already represents you."), "representative")
    policy = Policy(policy_set_id=_new_id(), template=303, patient_spid=spid, rule=rules.FULL,
                    subject_id=representative, end=end)
    message = (N_("%(who)s will act for you: see and manage your whole record, secret documents included, "
                  "until %(end)s.") if end else
               N_("%(who)s will act for you: see and manage your whole record, secret documents included, "
                  "until you remove them."))
    return Plan("POST", policy, None, (message, {"who": person.name, "end": end}))


def _revoke(form, spid, policies, today, directory) -> Plan:
    target = next((p for p in policies if consent_id(p) == form.get("consent_id")), None)
    if target is None or target.template in (201, 202, 203):
        raise FormProblem(N_("This permission does not exist (any more)."), "consent_id")
    who = directory.name_of(target.subject_id) or target.subject_id or ""
    if target.is_block:
        message = N_("%(who)s will no longer be blocked: what you allowed to everyone applies to them again.")
    elif target.template == 303:
        message = N_("%(who)s will no longer represent you.")
    else:
        message = N_("%(who)s will no longer see your documents (an emergency access stays possible as you set "
                     "it).")
    return Plan("DELETE", None, consent_id(target), (message, {"who": who}))


_PLANNERS = {"grant-professional": _grant_professional, "grant-group": _grant_group, "block": _block,
             "emergency": _emergency, "provide-level": _provide_level, "representative": _representative,
             "revoke": _revoke}


def _level(form) -> str:
    level = form.get("level", "")
    if level not in ("normal", "restricted"):
        raise FormProblem(N_("Choose normal or restricted."), "level")
    return level


def _date(value: str | None, field: str, today: date, *, required: bool) -> date | None:
    if not value:
        if required:
            raise FormProblem(N_("A group's access needs an end date."), field)
        return None
    try:
        parsed = parse_full_date(value)
    except InvalidDate:
        raise FormProblem(N_("Enter the date as year-month-day."), field) from None
    if parsed < today:
        raise FormProblem(N_("The end date is in the past."), field)
    return parsed


def _find(policies: list[Policy], template: int, subject: str, *, block: bool) -> Policy | None:
    return next((p for p in policies if p.template == template and p.subject_id == subject and p.is_block == block),
                None)


def _new_id() -> str:
    return f"urn:uuid:{uuid.uuid4()}"
