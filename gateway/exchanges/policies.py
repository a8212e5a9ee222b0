"""CH:PPQm use-cases: the patient's policies added, updated, removed (PPQ-3/PPQ-4) and retrieved
(PPQ-5), and the notifications owed to the patient. Part of the use-case layer with `documents.py`.

Consent resource ids are the uuid of the policy set (`policySetId` = `urn:uuid:<id>`).
"""

from __future__ import annotations

from collections.abc import Callable

import re
import uuid
from dataclasses import dataclass
from datetime import date
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Engine

from adapters.cara.errors import Conflict, Gone, InvalidInput, NotFound, StaleVersion, UnknownPatient
from adapters.cara.client_json import DEFAULT_LIMITS, JsonLimits
from adapters.cara.dates import fhir_instant
from adapters.cara.fhir_mapping import parse_resource, searchset
from adapters.cara.identifier_syntax import is_spid, is_uuid_urn
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import GLN_SYSTEM, SPID_SYSTEM
from audit.events import PolicySubject
from consent import pdp
from consent.policies import Policy, onboarding_policies
from consent.ppqm import consent_from_policy, policy_from_consent
from consent.principal import Principal
from consent.store import StoredPolicy
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused

_UUID_PREFIX = "urn:uuid:"
# PPQ-3 and PPQ-4 name a policy set by its id in a conditional URL (PpqmFeedRequestBundle, invariant
# ch-epr-ppqm-url-format): Consent?identifier=urn:uuid:<uuid>.
_CONDITIONAL = "Consent?identifier="
_POLICY_SET_ID = re.compile(r"^urn:uuid:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


@dataclass(frozen=True)
class PolicyChange:
    method: str  # POST (create), PUT (create or replace), DELETE
    policy_set_id: str
    policy: Policy | None  # None for DELETE
    if_match: int | None = None  # the version the client read (If-Match): stored only if still current


class PolicyExchange:
    def __init__(self, *, engine: Engine, patients: DatabasePatientIndex, access: AccessControl, auditor: Auditor,
                 json_limits: JsonLimits = DEFAULT_LIMITS, name_of: Callable[[str], str | None] | None = None):
        self.json_limits = json_limits
        # The professional / group directory (EPR_PORTAL_DIRECTORY): the names the trail shows for whom
        # a policy names (CH:ATC PolicyAuditEvent, entity:Resource.name).
        self._name_of = name_of or (lambda subject_id: None)
        self._engine = engine
        self._patients = patients
        self._access = access
        self.auditor = auditor
        # Called with the MPI-PID once a patient's EPR is opened (onboarding; see IdentityExchange.patient_fed).
        self.onboarded: list[Callable[[str], None]] = []

    # -- PPQ-3 / PPQ-4 ------------------------------------------------------------------------
    @audited("PPQ-3")
    def add(self, *, principal: Principal, body: bytes) -> tuple[dict[str, Any], bool]:
        policy = policy_from_consent(parse_resource(body, "Consent", limits=self.json_limits))
        [(_, stored)] = self._store(principal, [PolicyChange("POST", policy.policy_set_id, policy)], "PPQ-3")
        return self._consent(stored), True

    @audited("PPQ-3")
    def replace(self, *, principal: Principal, consent_id: str, body: bytes,
                if_match: int | None = None) -> tuple[dict[str, Any], bool]:
        """PUT Consent/<id>; `if_match`: the version the client read (412 if it is no longer the stored one)."""
        policy = policy_from_consent(parse_resource(body, "Consent", limits=self.json_limits))
        if policy.policy_set_id != _UUID_PREFIX + consent_id:
            raise InvalidInput(f"Consent/{consent_id} carries policySetId {policy.policy_set_id}",
                               location="Consent.identifier")
        [(created, stored)] = self._store(
            principal, [PolicyChange("PUT", policy.policy_set_id, policy, if_match)], "PPQ-3")
        return self._consent(stored), created

    @audited("PPQ-3")
    def replace_by_identifier(self, *, principal: Principal, identifier: str | None,
                              body: bytes, if_match: int | None = None) -> tuple[dict[str, Any], bool]:
        """PPQ-3 update at the IG's URL: PUT [base]/Consent?identifier=<policySetId> (create or replace)."""
        policy_set_id = policy_set_id_parameter(identifier)
        policy = policy_from_consent(parse_resource(body, "Consent", limits=self.json_limits))
        if policy.policy_set_id.lower() != policy_set_id:
            raise InvalidInput(f"the Consent carries policySetId {policy.policy_set_id}, the URL names {policy_set_id}",
                               location="Consent.identifier")
        [(created, stored)] = self._store(
            principal, [PolicyChange("PUT", policy.policy_set_id, policy, if_match)], "PPQ-3")
        return self._consent(stored), created

    @audited("PPQ-3")
    def remove_by_identifier(self, *, principal: Principal, identifier: str | None,
                             if_match: int | None = None) -> None:
        """PPQ-3 delete at the IG's URL: DELETE [base]/Consent?identifier=<policySetId>."""
        self._store(principal, [PolicyChange("DELETE", policy_set_id_parameter(identifier), None, if_match)], "PPQ-3")

    @audited("PPQ-3")
    def remove(self, *, principal: Principal, consent_id: str, if_match: int | None = None) -> None:
        """DELETE Consent/<id>. Deleting an already deleted policy set changes nothing and succeeds
        (FHIR: 204), for whoever may manage that patient's policies; an unknown id is 404."""
        self._store(principal, [PolicyChange("DELETE", _UUID_PREFIX + consent_id, None, if_match)], "PPQ-3")

    # -- FHIR read and vread (the same decision and audit as PPQ-5 by identifier) --------------
    @audited("PPQ-5")
    def read(self, *, principal: Principal, consent_id: str, version: int | None = None) -> dict[str, Any]:
        """GET Consent/<id> (`version` None) or Consent/<id>/_history/<version>. Only the current
        version is kept: an older one is 404; a deleted policy set is 410 Gone, but only to whom may
        manage that patient's policies (to anyone else it does not exist)."""
        policy_set_id = _UUID_PREFIX + consent_id
        if not is_uuid_urn(policy_set_id):
            raise NotFound(f"Consent/{consent_id} is not known")
        query = (("identifier", policy_set_id),)
        stored = self._access.store.stored(policy_set_id)
        if stored is None:
            deleted = self._access.store.deleted(policy_set_id)
            record = self._patients.get(deleted.pid) if deleted else None
            # Failures (unknown, refused, gone) are audited once, by @audited.
            if deleted is None or record is None or not record.spid or not self._access.decide(
                    principal, spid=record.spid, pid=deleted.pid, action="manage-policies").permit:
                raise NotFound(f"Consent/{consent_id} is not known")
            raise Gone(f"Consent/{consent_id} was deleted (version {deleted.version})")
        spid = stored.policy.patient_spid
        self._access.require(principal, spid=spid, pid=self._pid(spid), action="manage-policies")
        if version is not None and version != stored.version:
            raise NotFound(f"Consent/{consent_id} version {version} is not kept (the current version is "
                           f"{stored.version})", location="Consent.meta.versionId")
        self.auditor.write_now([self.auditor.record("PPQ-5", principal, patient_spid=spid, query=query)])
        return self._consent(stored)

    def apply(self, *, principal: Principal, changes: list[PolicyChange], transaction: str = "PPQ-4") -> list[bool]:
        """Authorise every change against the policies as they stand, then store all or nothing, each
        change audited in the same transaction. Returns, per change, whether it created a policy set."""
        return [created for created, _ in self._store(principal, changes, transaction)]

    @audited("PPQ-4")
    def transaction(self, *, principal: Principal, bundle: dict[str, Any]) -> dict[str, Any]:
        """PPQ-4: every change checked and authorised first, then all stored in one transaction."""
        changes = [_change(i, entry) for i, entry in enumerate(bundle.get("entry") or [])]
        if not changes:
            raise InvalidInput("a PPQ-4 Bundle needs at least one entry", location="Bundle.entry")
        if len({c.method for c in changes}) != 1:  # invariant ch-epr-ppqm-method-equality
            raise InvalidInput("every entry of a PPQ-4 Bundle uses the same HTTP method", location="Bundle.entry")
        stored = self._store(principal, changes, "PPQ-4")
        return {
            "resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "transaction-response",
            "entry": [{"response": _entry_response(c, made, kept)} for c, (made, kept) in zip(changes, stored, strict=True)],
        }

    def _store(self, principal: Principal, changes: list[PolicyChange],
               transaction: str) -> list[tuple[bool, StoredPolicy | None]]:
        """`apply`'s body: per change (created, the policy as stored; None for a deletion)."""
        changes = self._without_repeated_deletions(principal, changes, transaction)
        if not changes:
            return [(False, None)]
        targets, previous = [], []
        for change in changes:
            existing = self._access.store.get(change.policy_set_id)
            if change.method == "POST" and existing:
                raise Conflict(f"policy set {change.policy_set_id} already exists", location="Consent.identifier")
            if change.method == "DELETE" and existing is None:
                raise NotFound(f"Consent/{change.policy_set_id.removeprefix(_UUID_PREFIX)} is not known")
            spid = change.policy.patient_spid if change.policy else existing[1].patient_spid
            pid = self._pid(spid)
            if existing and existing[0] != pid:
                raise Conflict(f"policy set {change.policy_set_id} belongs to another patient",
                               location="Consent.patient")
            self._authorise(principal, change, existing[1] if existing else None, pid)
            targets.append(pid)
            previous.append(existing[1] if existing else None)
        for pid in set(targets):  # before the write: a reader cannot cache the old state under a new version
            self._access.cache.invalidate(pid)
        stored: list[tuple[bool, StoredPolicy | None]] = []
        with self._engine.begin() as connection:  # a stale If-Match raises here: nothing is kept
            for change, pid in zip(changes, targets, strict=True):
                if change.method == "DELETE":
                    self._access.store.remove(connection, change.policy_set_id, if_match=change.if_match)
                    stored.append((False, None))
                else:
                    stored.append(self._access.store.put(connection, change.policy, pid=pid, if_match=change.if_match))
            self.auditor.write(connection, [self._audit_record(transaction, principal, change, before)
                                            for change, before in zip(changes, previous, strict=True)])
        for pid in set(targets):
            self._access.cache.invalidate(pid)
        return stored

    def _without_repeated_deletions(self, principal: Principal, changes: list[PolicyChange],
                                    transaction: str) -> list[PolicyChange]:
        """A single DELETE of a policy set already deleted: nothing to change, success (FHIR says 200/204),
        decided and audited as a deletion, for whoever may manage that patient's policies (anyone else
        gets the 404 of an unknown id). Bundles keep the plain rule: every entry names a stored set."""
        if len(changes) != 1 or changes[0].method != "DELETE" or transaction != "PPQ-3":
            return changes
        change = changes[0]
        if self._access.store.get(change.policy_set_id) is not None:
            return changes
        deleted = self._access.store.deleted(change.policy_set_id)
        record = self._patients.get(deleted.pid) if deleted else None
        if deleted is None or record is None or not record.spid or not self._access.decide(
                principal, spid=record.spid, pid=deleted.pid, action="manage-policies").permit:
            raise NotFound(f"Consent/{change.policy_set_id.removeprefix(_UUID_PREFIX)} is not known")
        if change.if_match is not None and change.if_match != deleted.version:
            raise StaleVersion(f"Consent/{change.policy_set_id.removeprefix(_UUID_PREFIX)} is deleted "
                               f"(version {deleted.version})", location="If-Match")
        self.auditor.write_now([self.auditor.record("PPQ-3", principal, action="D", patient_spid=record.spid,
                                                    policy_set_id=change.policy_set_id)])
        return []

    def _authorise(self, principal: Principal, change: PolicyChange, existing: Policy | None, pid: str) -> None:
        policies = self._access.policies(pid)
        today = self._access.today()
        for policy in (change.policy, existing):
            if policy is None:
                continue
            decision = pdp.may_delegate(principal=principal, new_policy=policy, policies=policies, today=today)
            if not decision.permit:
                raise AccessRefused(decision.reason)

    def _audit_record(self, transaction: str, principal: Principal, change: PolicyChange, before: Policy | None):
        """One PPQ-3 event per change, a PPQ-4 Bundle's too (the IG's PPQ-4 audit example), its action
        the restful interaction of the change's method: POST create, PUT update (also where it creates
        the policy set: FHIR's update interaction, as the IG's PPQ-4 update Bundle sends it), DELETE
        delete. What the patient's trail shows (`_atc_code`) follows what changed, not the method."""
        policy = change.policy or before
        action = _ACTION_OF_METHOD[change.method]
        return self.auditor.record("PPQ-3", principal, action=action,
                                   atc_code=_atc_code(change.method, policy, before),
                                   patient_spid=policy.patient_spid, policy_set_id=policy.policy_set_id,
                                   policy_subject=_policy_subject(policy, self._subject_name(principal, policy)))

    def _subject_name(self, principal: Principal, policy: Policy) -> str | None:
        """The name of whom `policy` names, as known when the change is made: the policy's own local
        name, the directory's (professionals by GLN, groups by OID), else the acting user's own when they
        are the subject (a representative or professional signed in under their own id). Never a patient's
        name (201 names the patient): the ledger holds no patient names, and the trail (ITI-81) adds the
        patient's from the MPI when it is read, and the identifier value where no name is known."""
        subject = policy.subject_id
        if subject is None or policy.template == 201:
            return None
        if policy.subject_name:
            return policy.subject_name
        if policy.template in (301, 302, 304) and (known := self._name_of(subject)):
            return known
        role = _SUBJECT_KINDS[policy.template][1] if policy.template in _SUBJECT_KINDS else None
        if principal.role == role and principal.user_id == subject and principal.name:
            return principal.name
        if role == "HCP" and principal.acting_for == subject and principal.acting_for_name:
            return principal.acting_for_name
        return None

    def today(self) -> date:
        """The day policies are judged against: the decision point's clock (a page that shows which
        policies are in force must use the same day as the decisions)."""
        return self._access.today()

    def onboard_unless_open(self, *, principal: Principal, spid: str) -> bool:
        """Onboard (see `onboard`) a registered patient whose EPR is not open yet, i.e. who has no
        policies; False for an unknown SPID or an EPR already open (nothing written)."""
        pid = self._patients.pid_for_spid(spid)
        if pid is None or self._access.policies(pid):
            return False
        self.onboard(principal=principal, spid=spid)
        return True

    def onboard(self, *, principal: Principal, spid: str) -> tuple[Policy, ...]:
        """The bootstrap set (201 full access, 202 emergency normal, 203 provide normal)."""
        ids = tuple(f"{_UUID_PREFIX}{uuid.uuid4()}" for _ in range(3))
        policies = onboarding_policies(patient_spid=spid, policy_set_ids=ids)
        self.apply(principal=principal, changes=[PolicyChange("POST", p.policy_set_id, p) for p in policies])
        pid = self._patients.pid_for_spid(spid)
        for follower in self.onboarded if pid else ():
            follower(pid)
        return policies

    # -- PPQ-5 --------------------------------------------------------------------------------
    def retrieve(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        names = {n for n, _ in params}
        if names - {"patient:identifier", "identifier"} or len(params) != 1:
            raise InvalidInput("PPQ-5 takes exactly one of patient:identifier=urn:oid:2.16.756.5.30.1.127.3.10.3|"
                               "<SPID> or identifier=<policy set uuid>", location="Consent?")
        name, value = params[0]
        if name == "identifier":
            policy_set_id = value if value.startswith(_UUID_PREFIX) else _UUID_PREFIX + value
            if not is_uuid_urn(policy_set_id):
                raise InvalidInput("identifier must be a policy set id (urn:uuid:… or the bare uuid)",
                                   location="identifier")
            found = self._access.store.stored(policy_set_id)
            spid = found.policy.patient_spid if found else None
            policies = [found] if found else []
        else:
            system, _, spid = value.partition("|")
            if system != SPID_SYSTEM or not is_spid(spid):
                raise InvalidInput(f"patient:identifier must be {SPID_SYSTEM}|<18-digit EPR-SPID>",
                                   location="patient:identifier")
            pid = self._patients.pid_for_spid(spid)
            policies = self._access.store.stored_for(pid) if pid else []
        if spid is not None and policies:
            self._access.require(principal, spid=spid, pid=self._pid(spid), action="manage-policies")
        consents = [self._consent(p) for p in policies]
        self.auditor.write_now([self.auditor.record("PPQ-5", principal, patient_spid=spid, query=tuple(params))])
        return searchset(consents, total=len(consents), self_url=f"{base_url}/Consent?{urlencode(params, safe=':|')}",
                         next_url=None, base_url=base_url)

    # -- notifications ------------------------------------------------------------------------
    def notifications(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        """The patient's notifications as Communication resources (emergency accesses), newest first."""
        values = [v for n, v in params if n in ("recipient.identifier", "recipient:identifier")]
        if len(values) != 1 or len(params) != 1:
            raise InvalidInput(f"use recipient.identifier={SPID_SYSTEM}|<SPID>", location="recipient.identifier")
        system, _, spid = values[0].partition("|")
        if system != SPID_SYSTEM or not is_spid(spid):
            raise InvalidInput(f"recipient.identifier must be {SPID_SYSTEM}|<18-digit EPR-SPID>",
                               location="recipient.identifier")
        pid = self._pid(spid)
        self._access.require(principal, spid=spid, pid=pid, action="read-audit")
        self.auditor.write_now([self.auditor.record("notifications", principal, patient_spid=spid)])
        resources = [_communication(notification_id, created, notice, spid)
                     for notification_id, created, notice in self._access.notifications.for_patient(pid)]
        return searchset(resources, total=len(resources), self_url=f"{base_url}/Communication?"
                         f"{urlencode(params, safe=':|')}", next_url=None, base_url=base_url)

    # -- helpers ------------------------------------------------------------------------------
    def _pid(self, spid: str) -> str:
        pid = self._patients.pid_for_spid(spid)
        if pid is None:
            raise UnknownPatient(f"EPR-SPID {spid} is not registered in this community", location="Consent.patient")
        return pid

    @staticmethod
    def _consent(stored: StoredPolicy) -> dict[str, Any]:
        consent = consent_from_policy(stored.policy)
        meta = {**consent.pop("meta", {}), "versionId": str(stored.version),
                "lastUpdated": fhir_instant(stored.updated_at)}
        return {"resourceType": "Consent", "id": stored.policy.policy_set_id.removeprefix(_UUID_PREFIX),
                "meta": meta, **consent}


def _entry_response(change: PolicyChange, created: bool, stored: StoredPolicy | None) -> dict[str, Any]:
    """A PPQ-4 entry's response: status and location as the IG shows them, with the version stored."""
    response: dict[str, Any] = {"status": "204 No Content" if change.method == "DELETE" else
                                "201 Created" if created else "200 OK",
                                "location": f"Consent/{change.policy_set_id.removeprefix(_UUID_PREFIX)}"}
    if stored is not None:
        response["etag"] = f'W/"{stored.version}"'
        response["lastModified"] = fhir_instant(stored.updated_at)
    return response


# The restful interaction of each PPQ-3/PPQ-4 method, as the record's action (C create, U update, D delete).
_ACTION_OF_METHOD = {"POST": "C", "PUT": "U", "DELETE": "D"}


def _atc_code(method: str, policy: Policy, before: Policy | None) -> str:
    """The CH:ATC event type the patient sees for one policy change."""
    if policy.template == 202:
        return "ATC_POL_DIS_EMER_USE" if method == "DELETE" else "ATC_POL_ENA_EMER_USE"
    if policy.template == 203:
        return "ATC_POL_DEF_CONFLEVEL"
    if policy.is_block or (before is not None and before.is_block):
        return "ATC_POL_EXL_BLACKLIST" if method == "DELETE" or not policy.is_block else "ATC_POL_INCL_BLACKLIST"
    if method == "DELETE":
        return "ATC_POL_REMOVE_AUT_PART_AL"
    return "ATC_POL_UPDATE_AUT_PART_AL" if before is not None else "ATC_POL_CREATE_AUT_PART_AL"


_SUBJECT_KINDS = {301: (GLN_SYSTEM, "HCP"), 304: (GLN_SYSTEM, "HCP"), 302: ("urn:ietf:rfc:3986", "GRP"),
                  303: ("urn:e-health-suisse:representative-id", "REP"), 201: (SPID_SYSTEM, "PAT")}


def _policy_subject(policy: Policy, name: str | None = None) -> PolicySubject | None:
    if policy.subject_id is None or policy.template not in _SUBJECT_KINDS:
        return None
    system, role = _SUBJECT_KINDS[policy.template]
    return PolicySubject(system=system, value=policy.subject_id, role=role, name=name, access_level=policy.rule,
                         access_limited_to=policy.end)


def _communication(notification_id: str, created, notice: dict[str, Any], spid: str) -> dict[str, Any]:
    by = notice["by"]
    who = by.get("name") or by["id"]
    text = (f"Emergency access to your record ({notice['what']}) by {who} ({by['role']}"
            + (f", {by['organisation']}" if by.get("organisation") else "") + f") on {notice['at']}; "
            f"documents: {', '.join(notice['documents']) or 'none'}"
            + (f"; reason given: {notice['reason']}" if notice.get("reason") else ""))
    return {
        "resourceType": "Communication",
        "id": notification_id,
        "status": "completed",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/communication-category",
                                  "code": "notification"}]}],
        "subject": {"identifier": {"system": SPID_SYSTEM, "value": spid}},
        "recipient": [{"identifier": {"system": SPID_SYSTEM, "value": spid}}],
        "sent": created.isoformat(timespec="seconds") + "+00:00",
        "reasonCode": [{"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.5", "code": notice["purpose_of_use"]}]}
                       | ({"text": notice["reason"]} if notice.get("reason") else {})],
        "payload": [{"contentString": text}],
    }


def policy_set_id_parameter(value: str | None) -> str:
    """The policy set id a conditional PPQ-3/PPQ-4 URL names (`identifier=urn:uuid:<uuid>`, optionally
    with the system `urn:ietf:rfc:3986|`), lower-cased; InvalidInput otherwise."""
    value = (value or "").removeprefix("urn:ietf:rfc:3986|").lower()
    if not _POLICY_SET_ID.match(value):
        raise InvalidInput("identifier must name a policy set: identifier=urn:uuid:<uuid>", location="identifier")
    return value


def _change(index: int, entry: dict[str, Any]) -> PolicyChange:
    request = entry.get("request") or {}
    method = request.get("method")
    where = f"Bundle.entry[{index}]"
    url = request.get("url") or ""
    if method == "DELETE":
        if url.startswith(_CONDITIONAL):
            return PolicyChange("DELETE", policy_set_id_parameter(url.removeprefix(_CONDITIONAL)), None)
        if not url.startswith("Consent/"):
            raise InvalidInput(f"a DELETE entry names {_CONDITIONAL}urn:uuid:<id> (or Consent/<id>) in request.url",
                               location=f"{where}.request.url")
        return PolicyChange("DELETE", _UUID_PREFIX + url.removeprefix("Consent/"), None)
    if method not in ("POST", "PUT"):
        raise InvalidInput("entry.request.method must be POST, PUT or DELETE", location=f"{where}.request.method")
    resource = entry.get("resource")
    if not isinstance(resource, dict) or resource.get("resourceType") != "Consent":
        raise InvalidInput("a PPQ-4 Bundle holds Consent resources only", location=f"{where}.resource")
    policy = policy_from_consent(resource)
    if method == "PUT" and url.startswith(_CONDITIONAL) \
            and policy_set_id_parameter(url.removeprefix(_CONDITIONAL)) != policy.policy_set_id.lower():
        # invariant ch-epr-ppqm-constistent-ids
        raise InvalidInput("the Consent's policySetId is not the one request.url names", location=f"{where}.request.url")
    return PolicyChange(method, policy.policy_set_id, policy)
