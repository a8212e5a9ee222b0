"""CH:ATC (ITI-81): the patient reads who did what with their record. Part of the use-case layer.

Only the patient and their representatives read a trail (`read-audit`); the read itself is recorded
(ATC_LOG_READ) before the answer leaves.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode

from adapters.cara.errors import InvalidInput
from adapters.cara.dates import InvalidDate, value_range
from adapters.cara.identifier_syntax import ascii_int, is_spid
from adapters.cara.store.patients import DatabasePatientIndex
from adapters.cara.vocabulary import ROLE_SYSTEM, SPID_SYSTEM
from audit.events import GROUP_ROLE_SYSTEM
from consent.principal import Principal
from gateway.exchanges.access import AccessControl
from gateway.exchanges.auditing import Auditor, audited
from gateway.auth.errors import AccessRefused
from gateway.exchanges.paging_cursors import NOT_ISSUED, PAGING_PARAMS, PageCursors

_PARAMS = frozenset({"entity.identifier", "date", "_count", "_offset", "_cursor"})
DEFAULT_COUNT = 20  # as ITI-67
MAX_COUNT = 100
MAX_OFFSET = 10**9
_PARTICIPANT_SYSTEMS = (ROLE_SYSTEM, GROUP_ROLE_SYSTEM)  # the role systems of a policy's subject entity
PROFILE_ITI81_RESPONSE = "http://fhir.ch/ig/ch-epr-fhir/StructureDefinition/CH-ATC.ITI-81.Response"


class AuditTrail:
    def __init__(self, *, patients: DatabasePatientIndex, access: AccessControl, auditor: Auditor,
                 cursors: PageCursors, name_of: Callable[[str], str | None] | None = None):
        self._patients = patients
        self._name_of = name_of or (lambda subject_id: None)  # the professional / group directory
        self._cursors = cursors
        self._access = access
        self.auditor = auditor

    @audited("ITI-81")
    def read(self, *, principal: Principal, params: list[tuple[str, str]], base_url: str) -> dict[str, Any]:
        unknown = sorted({n for n, _ in params} - _PARAMS)
        if unknown:
            raise InvalidInput(f"unknown or unsupported search parameter(s): {', '.join(unknown)}",
                               location="AuditEvent?" + "&".join(unknown))
        patients = [v for n, v in params if n == "entity.identifier"]
        if len(patients) != 1:
            raise InvalidInput(f"exactly one entity.identifier={SPID_SYSTEM}|<EPR-SPID> is required",
                               location="entity.identifier")
        system, _, spid = patients[0].partition("|")
        if system != SPID_SYSTEM or not is_spid(spid):
            raise InvalidInput(f"entity.identifier must be {SPID_SYSTEM}|<18-digit EPR-SPID>",
                               location="entity.identifier")
        since, until = _period([v for n, v in params if n == "date"])
        count = _paging(params, "_count", DEFAULT_COUNT, 0, MAX_COUNT)  # 0: the total only, as ITI-67
        offset = _paging(params, "_offset", 0, 0, MAX_OFFSET)
        after, through = self._continued(principal, params)
        self._access.require_patient_context(principal, spid)
        pid = self._patients.pid_for_spid(spid)
        if pid is None:
            raise AccessRefused("the audit trail is read by the patient or their representative only")
        self._access.require(principal, spid=spid, pid=pid, action="read-audit")
        total, events, next_after, through = self.auditor.ledger.page_for_patient(
            patient_key=self.auditor.patient_key(spid), since=since, until=until, offset=offset, count=count,
            after=after, through=through)
        self.auditor.write_now([self.auditor.record("ITI-81", principal, atc_code="ATC_LOG_READ", patient_spid=spid,
                                                    query=tuple(params))])
        patient_name = _display_name(self._patients.get(pid))
        events = [_with_subject_names(_with_represented_patient(e, patient_name), spid, patient_name, self._name_of)
                  for e in events]
        links = [{"relation": "self", "url": f"{base_url}/AuditEvent?{urlencode(params, safe=':|')}"}]
        if next_after is not None:
            cursor = self._cursors.issue(search="ITI-81", principal=principal, params=params,
                                         position=[through, next_after[0].isoformat(), next_after[1]])
            paged = [(n, v) for n, v in params if n not in PAGING_PARAMS]
            paged += [("_count", str(count)), ("_cursor", cursor)]
            links.append({"relation": "next", "url": f"{base_url}/AuditEvent?{urlencode(paged, safe=':|')}"})
        return {
            "resourceType": "Bundle", "id": str(uuid.uuid4()), "meta": {"profile": [PROFILE_ITI81_RESPONSE]},
            "type": "searchset", "total": total,
            "link": links,
            "entry": [{"fullUrl": f"{base_url}/AuditEvent/{e['id']}", "resource": e, "search": {"mode": "match"}}
                      for e in events],
        }


    def _continued(self, principal: Principal, params: list[tuple[str, str]]):
        """(after, through) of the page a `_cursor` names, or (None, None) for a first page."""
        cursors = [v for n, v in params if n == "_cursor"]
        if not cursors:
            return None, None
        if len(cursors) > 1 or any(n == "_offset" for n, _ in params):
            raise InvalidInput("_cursor is given once and without _offset: follow the next link as it is",
                               location="_cursor")
        position = self._cursors.read(search="ITI-81", principal=principal, params=params, cursor=cursors[0])
        match position:
            case [int() as through, str() as recorded_at, int() as seq]:
                try:
                    return (datetime.fromisoformat(recorded_at), seq), through
                except ValueError:
                    pass
        raise InvalidInput(NOT_ISSUED, location="_cursor")


def _display_name(record) -> str | None:
    if record is None or not (record.family or record.given):
        return None
    return " ".join([*record.given, record.family or ""]).strip()


def _with_represented_patient(event: dict[str, Any], patient_name: str | None) -> dict[str, Any]:
    """When a representative acted, the patient they represent is an agent of the event (as in the IG's
    ITI-81 sample). The ledger is kept in the clear and holds no names, so the patient's name is added
    here, from the MPI, when the patient (or their representative) reads the trail."""
    acting_rep = any(a.get("requestor") and _role(a) == "REP" for a in event.get("agent", []))
    if not acting_rep or not patient_name or any(_role(a) == "PAT" for a in event["agent"]):
        return event
    patient = {"role": [{"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.6", "code": "PAT",
                                     "display": "Patient"}]}], "name": patient_name, "requestor": False}
    return {**event, "agent": [patient, *event["agent"]]}


def _with_subject_names(event: dict[str, Any], spid: str, patient_name: str | None,
                        name_of: Callable[[str], str | None]) -> dict[str, Any]:
    """CH:ATC PolicyAuditEvent requires `entity:Resource.name` (1..1) for whom a policy names. Written
    when the change was made where a name was known (the directory, the acting user); filled here
    otherwise: the patient's own name from the MPI for their 201 (only when the subject is this very
    patient: never another patient's demographics), the directory's for a professional or group, and
    where no name is known at all the identifier value itself (a GLN, a group OID, a representative id),
    which the profile allows as a name and which tells the patient whom the policy names."""
    if not event["subtype"][0]["code"].startswith("ATC_POL"):
        return event
    entities = []
    for entity in event.get("entity", []):
        role = entity.get("role", {})
        identifier = entity.get("what", {}).get("identifier", {})
        value = identifier.get("value") or ""
        # No name, or the identifier standing in for one (what the ledger writes when none was known).
        if (entity.get("type", {}).get("code") == "2" and role.get("system") in _PARTICIPANT_SYSTEMS
                and entity.get("name") in (None, "", value)):
            if role.get("code") == "PAT":
                own = identifier.get("system") == SPID_SYSTEM and value == spid
                name = patient_name if own and patient_name else value
            else:
                name = name_of(value) or value
            entity = {**entity, "name": name}
        entities.append(entity)
    return {**event, "entity": entities}


def _role(agent: dict[str, Any]) -> str | None:
    return next((c.get("code") for r in agent.get("role", []) for c in r.get("coding", [])), None)


def _paging(params: list[tuple[str, str]], name: str, default: int, low: int, high: int) -> int:
    """`_count` / `_offset`: once at most, ASCII digits within [low, high], else 400."""
    values = [v for n, v in params if n == name]
    if not values:
        return default
    number = ascii_int(values[0])
    if len(values) > 1 or number is None or not low <= number <= high:
        raise InvalidInput(f"{name} must be given once, as an integer from {low} to {high}", location=name)
    return number


def _period(values: list[str]):
    """date=geX / date=leY (other prefixes refused) → aware datetimes for the ledger query."""
    since = until = None
    for value in values:
        prefix, literal = value[:2], value[2:]
        try:
            start, end = value_range(literal)
        except InvalidDate as refused:
            raise InvalidInput(f"date: {refused.reason} (use ge… and le… with a FHIR date)", location="date") from None
        if prefix == "ge":
            since = start.replace(tzinfo=UTC)
        elif prefix == "le":
            until = end.replace(tzinfo=UTC)
        else:
            raise InvalidInput("date takes the prefixes ge and le", location="date")
    return since, until
