"""The trail's fill of `entity:Resource.name` (CH:ATC PolicyAuditEvent, 1..1) for events stored without
one: older records, the patient's own 201, subjects nobody named."""

from audit.events import AuditRecord, PolicySubject, atc_view, to_audit_event
from consent.principal import Principal
from gateway.exchanges.trail import _with_subject_names

SPID = "761337610411353650"
OTHER_SPID = "761337610499999991"
PATIENT = Principal(role="PAT", user_id=SPID, user_id_qualifier="urn:e-health-suisse:2015:epr-spid", name="Anna Muster")
DIRECTORY = {"7601000000002": "Dr. med. Luc Favre", "urn:oid:2.16.756.5.30.1.999.77": "Médecine interne"}


def trail_view(system: str, value: str, role: str, name: str | None = None) -> dict:
    record = AuditRecord(transaction="PPQ-3", principal=PATIENT, source_site="2.16.756.5.30.1.999",
                         atc_code="ATC_POL_CREATE_AUT_PART_AL", patient_spid=SPID,
                         policy_subject=PolicySubject(system=system, value=value, role=role, name=name))
    return atc_view(to_audit_event(record))


def names(event: dict) -> list[tuple[str, str | None]]:
    return [(e["role"]["code"], e.get("name")) for e in event["entity"] if e["type"]["code"] == "2"]


def test_unnamed_subjects_get_the_directory_name_the_patient_name_or_their_identifier():
    cases = [
        (("urn:oid:2.51.1.3", "7601000000002", "HCP"), "Dr. med. Luc Favre"),  # stored before names were
        (("urn:ietf:rfc:3986", "urn:oid:2.16.756.5.30.1.999.77", "GRP"), "Médecine interne"),
        (("urn:oid:2.51.1.3", "7601000000019", "HCP"), "7601000000019"),  # not in the directory
        (("urn:e-health-suisse:representative-id", "rep-4711", "REP"), "rep-4711"),
        (("urn:oid:2.16.756.5.30.1.127.3.10.3", SPID, "PAT"), "Anna Muster"),  # this patient's own 201
        (("urn:oid:2.16.756.5.30.1.127.3.10.3", OTHER_SPID, "PAT"), OTHER_SPID),  # never another's demographics
    ]
    for (system, value, role), expected in cases:
        event = _with_subject_names(trail_view(system, value, role), SPID, "Anna Muster", DIRECTORY.get)
        assert names(event) == [(role, expected)], value


def test_a_name_written_with_the_change_is_kept():
    event = trail_view("urn:oid:2.51.1.3", "7601000000002", "HCP", name="Dr. Favre (as granted)")

    assert names(_with_subject_names(event, SPID, "Anna Muster", DIRECTORY.get)) == [("HCP", "Dr. Favre (as granted)")]
