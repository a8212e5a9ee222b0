"""`ProfessionalExchange` and `professional_principal` (gateway/exchanges/professionals.py): the page's
person becomes the Principal an IUA token for the same person gives; patients shown only with an open EPR;
an emergency bound to one patient with a reason the patient reads; uploads checked field by field, as ITI-65;
one's own activity only."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest

from adapters.cara import value_sets
from adapters.cara.errors import InvalidInput, NotFound
from adapters.cara.upload_bundle import Upload
from audit.events import to_audit_event
from conftest import HCP_GLN
from consent.principal import Group
from gateway.auth.errors import AccessRefused, AuthenticationFailed
from gateway.exchanges.professionals import Professional, checked_reason, professional_principal
from gateway.samples import pdf_document
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE,
    OTHER_SPID,
    SPID,
    feed,
    ledger,
    open_record,
    provide,
    runtime,
    services,
)

ASSISTANT_GLN, OTHER_GLN = "7601000000019", "7601000000026"
FAVRE = Professional(role="HCP", gln=HCP_GLN, name="Dr. Luc Favre", organisation="Cabinet Favre",
                     organisation_id="urn:oid:2.16.756.5.30.1.999.8.1",
                     groups=(Group("urn:oid:2.16.756.5.30.1.999.7.1", "Médecine interne"),))
ASSISTANT = Professional(role="ASS", gln=ASSISTANT_GLN, name="Ana Assistant", acting_for=HCP_GLN,
                         acting_for_name="Dr. Luc Favre")
REASON = "Patient unconscious in the practice, no relative reachable"
TOKEN_ONLY = ("token_id", "issuer", "client_id")  # what differs between a page's session and a token by nature


@pytest.mark.parametrize("person, claims", [
    (FAVRE, dict(role="HCP", gln=HCP_GLN, name="Dr. Luc Favre", organisation="Cabinet Favre",
                 organisation_id="urn:oid:2.16.756.5.30.1.999.8.1",
                 groups=[Group("urn:oid:2.16.756.5.30.1.999.7.1", "Médecine interne")])),
    (ASSISTANT, dict(role="ASS", gln=ASSISTANT_GLN, name="Ana Assistant", principal_gln=HCP_GLN,
                     principal_name="Dr. Luc Favre")),
])
def test_the_page_principal_is_the_one_an_iua_token_for_the_same_person_gives(runtime, person, claims):
    from gateway.first_start import dev_issuer_url
    from gateway.auth.dev_issuer import mint_token

    settings = runtime.settings
    token = mint_token(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience,
                       **claims)
    over_fhir = runtime.verifier.verify(token)
    on_the_page = professional_principal(person, issuer="https://idp.example")

    assert {k: v for k, v in dataclasses.asdict(on_the_page).items() if k not in TOKEN_ONLY} == \
        {k: v for k, v in dataclasses.asdict(over_fhir).items() if k not in TOKEN_ONLY}
    assert (on_the_page.client_id, on_the_page.issuer, on_the_page.token_id) == ("epr-hcp-page", "https://idp.example",
                                                                                 None)


@pytest.mark.parametrize("person, refusal", [
    (dataclasses.replace(FAVRE, gln="7601000000003"), AuthenticationFailed),  # wrong check digit
    (dataclasses.replace(ASSISTANT, acting_for=None), AuthenticationFailed),  # an assistant without delegation
    (dataclasses.replace(ASSISTANT, acting_for="7601000000003"), AuthenticationFailed),
    (dataclasses.replace(FAVRE, role="PAT"), AccessRefused),
    (dataclasses.replace(FAVRE, role="TCU"), AccessRefused),
])
def test_what_the_fhir_door_refuses_the_page_refuses(person, refusal):
    with pytest.raises(refusal):
        professional_principal(person, issuer="https://idp.example")


def test_an_emergency_principal_is_bound_to_its_patient_and_carries_its_reason():
    emergency = professional_principal(FAVRE, issuer="x", emergency_reason=f"  {REASON}\n ", patient_spid=SPID)

    assert (emergency.purpose_of_use, emergency.emergency_reason, emergency.patient_spid) == ("EMER", REASON, SPID)
    event = to_audit_event(_record(emergency))
    assert event["purposeOfEvent"][0]["text"] == REASON
    assert [a["purposeOfUse"][0] for a in event["agent"] if a.get("requestor")] == [
        {"coding": [{"system": "urn:oid:2.16.756.5.30.1.127.3.10.5", "code": "EMER", "display": "Emergency Access"}],
         "text": REASON}]
    with pytest.raises(AccessRefused):
        professional_principal(FAVRE, issuer="x", emergency_reason=REASON)  # for no patient in particular


@pytest.mark.parametrize("reason", ["", "too short", "x" * 301, "line one\x07bell and more"])
def test_an_emergency_needs_a_reason_the_patient_can_read(reason):
    with pytest.raises(InvalidInput):
        checked_reason(reason)
    with pytest.raises(InvalidInput):
        professional_principal(FAVRE, issuer="x", emergency_reason=reason, patient_spid=SPID)


def test_patients_are_shown_only_with_an_open_record(services):
    open_pid = open_record(services)
    fed_only = feed(services, spid=OTHER_SPID, local_id="L-2", family="Muster", given="Berta")
    principal = professional_principal(FAVRE, issuer="x")

    found = services.professionals.find_patients(principal=principal, params=[("family", "Muster")], base_url=BASE)
    assert [p.pid for p in found.patients] == [open_pid]
    assert services.professionals.patient(principal=principal, pid=open_pid).spid == SPID
    for pid in (fed_only, "no-such-patient"):
        with pytest.raises(NotFound, match="is not known"):
            services.professionals.patient(principal=principal, pid=pid)


def test_too_many_patients_ask_for_more_attributes(services):
    for n in range(6):
        feed(services, spid=f"76133761040000{n:03d}1", local_id=f"N-{n}", given=f"Anna{n}")
    found = services.professionals.find_patients(principal=professional_principal(FAVRE, issuer="x"),
                                                 params=[("family", "Muster")], base_url=BASE)
    assert found.patients == () and found.wanted == ("Patient.name.given", "Patient.birthDate", "Patient.gender")


def test_an_emergency_is_recorded_with_its_reason_before_anything_is_read(services, runtime):
    pid = open_record(services, grant=None)
    emergency = professional_principal(FAVRE, issuer="x", emergency_reason=REASON, patient_spid=SPID)

    assert services.professionals.emergency(principal=emergency, pid=pid).spid == SPID
    event = runtime.ledger.all_records()[-1]
    assert (ledger(runtime)[-1][0], event["purposeOfEvent"][0]["text"]) == ("hcp-emergency", REASON)
    with pytest.raises(AccessRefused):
        services.professionals.emergency(principal=professional_principal(FAVRE, issuer="x"), pid=pid)


def test_an_emergency_reads_its_own_patient_only(services):
    open_record(services, grant=None)
    emergency = professional_principal(FAVRE, issuer="x", emergency_reason=REASON, patient_spid=OTHER_SPID)
    provide(services)

    with pytest.raises(AccessRefused):  # bound to another patient: the token rule refuses the search
        services.exchange.find(principal=emergency, params=[("patient.identifier",
                                                             f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}")],
                               base_url=BASE)


def upload(**changes) -> Upload:
    values = dict(content=pdf_document("Letter", ["Dear colleague"]), title="Letter to the family doctor",
                  type_code=value_sets.concept("type", "371530004").code,
                  class_code=value_sets.concept("class", "371531000").code,
                  facility_type=value_sets.concept("facility", "264358009").code,
                  practice_setting=value_sets.concept("setting", "394802001").code,
                  date="2025-03-01", language="fr-CH", confidentiality="normal")
    return Upload(**{**values, **changes})


def test_an_upload_is_an_iti65_provide_with_the_professional_as_author(services, runtime):
    pid = open_record(services)
    principal = professional_principal(FAVRE, issuer="x")

    provided = services.professionals.upload(principal=principal, pid=pid, upload=upload(), base_url=BASE)

    [location] = [e["response"]["location"] for e in provided.response["entry"]
                  if "/DocumentReference/" in e["response"]["location"]]
    entry = services.exchange.documents.get_entry(location.split("/DocumentReference/")[1].split("/")[0])
    assert ledger(runtime)[-1] == ("ITI-65", "C", "0")
    assert (entry.title, entry.mime_type, entry.language, entry.type_code.code) == (
        "Letter to the family doctor", "application/pdf", "fr-CH", "371530004")
    assert (entry.original_provider_role.code, entry.submitter.role, entry.submitter.user_id) == ("HCP", "HCP", HCP_GLN)
    practitioner, institution = (a.resource["contained"][0] for a in entry.authors)
    assert (practitioner["identifier"], practitioner["name"]) == (
        [{"system": "urn:oid:2.51.1.3", "value": HCP_GLN}],
        [{"text": "Dr. Luc Favre", "family": "Favre", "given": ["Luc"], "prefix": ["Dr."]}])
    assert institution["name"] == "Cabinet Favre"
    assert documents_of_the_patient(services) == 1


@pytest.mark.parametrize("changes, field", [
    (dict(content=b"<html>not a pdf</html>"), "file"),
    (dict(content=b"%PDF-1.4 but never ended"), "file"),
    (dict(content=b"%PDF-" + b"0" * 3000 + b"%%EOF"), "file-size"),
    (dict(title=" "), "title"),
    (dict(title="x" * 201), "title"),
    (dict(type_code=value_sets.concept("class", "371531000").code), "type"),  # a class code is no type
    (dict(facility_type=value_sets.concept("setting", "394802001").code), "facility"),
    (dict(date="tomorrow"), "date"),
    (dict(date=(datetime.now(UTC).date() + timedelta(days=2)).isoformat()), "date"),
    (dict(language="xx"), "language"),
    (dict(confidentiality="public"), "confidentiality"),
])
def test_a_bad_upload_names_its_field_and_stores_nothing(services, runtime, changes, field):
    pid = open_record(services)
    services.professionals.max_upload_bytes = 2048
    before = len(runtime.ledger.all_records())

    with pytest.raises(InvalidInput) as refused:
        services.professionals.upload(principal=professional_principal(FAVRE, issuer="x"), pid=pid,
                                      upload=upload(**changes), base_url=BASE)

    assert refused.value.issues[0].location == field
    assert ledger(runtime)[before:] == [("ITI-65", "E", "4")]  # the refusal is audited, nothing else happened
    assert documents_of_the_patient(services) == 0


def test_my_activity_is_mine_and_my_assistants_only(services):
    pid = open_record(services)
    me, assistant = professional_principal(FAVRE, issuer="x"), professional_principal(ASSISTANT, issuer="x")
    someone_else = professional_principal(dataclasses.replace(FAVRE, gln=OTHER_GLN, name="Dr. Other"), issuer="x")
    for principal in (me, assistant, someone_else):
        services.professionals.patient(principal=principal, pid=pid)

    mine = services.professionals.activity(principal=me)
    assert [(r.who, r.role, r.transaction, r.patient_spid) for r in mine] == [
        ("Ana Assistant", "ASS", "ITI-78", SPID), ("Dr. Luc Favre", "HCP", "ITI-78", SPID),
        ("Dr. Luc Favre", "HCP", "ITI-104", SPID)]  # newest first; the feed that opened the record was his too
    assert [r.who for r in services.professionals.activity(principal=someone_else)] == ["Dr. Other"]
    assert [r.who for r in services.professionals.activity(principal=assistant)] == [r.who for r in mine]


def documents_of_the_patient(services) -> int:
    """What the patient's own ITI-67 counts (every level): what the record holds for them."""
    import orjson

    from unit.gateway.exchanges.exchange_world import patient

    return orjson.loads(services.exchange.find(principal=patient(SPID), base_url=BASE, params=[
        ("patient.identifier", f"urn:oid:2.16.756.5.30.1.127.3.10.3|{SPID}")]))["total"]


def _record(principal):
    from audit.events import AuditRecord

    return AuditRecord(transaction="ITI-67", principal=principal, source_site="2.16.756.5.30.1.999.1.1",
                       atc_code="ATC_DOC_SEARCH", patient_spid=SPID)
