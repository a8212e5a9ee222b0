"""A sender merges only identities of the assigning authorities its senders file entry gives it (issue 22
item 7): an ADT^A40 naming another institution's patient ids, or patients by EPR-SPID, is AE, changes
nothing and is audited; merges within its own authority work as before."""

from __future__ import annotations

import pytest

from conftest import LOCAL_SYSTEM, OTHER_SPID, SPID, running_gateway
from functional.helpers import row_counts
from functional.mllp_helpers import HOSPITAL, ack_fields, running_bridge, running_listener, send_one, senders_file

OWN = LOCAL_SYSTEM.removeprefix("urn:oid:")  # the test hospital's authority (its senders file entry)
OTHER = "2.16.756.5.30.1.999.7.7"  # another institution's
SPID_OID = "2.16.756.5.30.1.127.3.10.3"
CLINIC = {"facility": "CLINIQUE-BRIG", "user_id": "brig-feed", "principal_gln": "7601000000002",
          "assigning_authority": f"urn:oid:{OTHER}"}


@pytest.fixture
def bridge(tmp_path, database_url):
    with running_bridge(tmp_path, database_url, CLINIC) as (gateway, address):
        gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Muster", given="Annette")
        patients = gateway.services.exchange.patients
        # the clinic knows both patients under its own ids too
        for spid, local in ((SPID, "B-1"), (OTHER_SPID, "B-2")):
            patients.register(_id(OTHER, local), patients.get(patients.pid_for_spid(spid)), complete=False)
        yield gateway, address


def _id(oid: str, value: str):
    from adapters.cara.model import Identifier

    return Identifier(f"urn:oid:{oid}", value)


def a40(control_id: str, surviving: str, retired: str, *, facility: str = HOSPITAL) -> bytes:
    return (f"MSH|^~\\&|KIS|{facility}|EPR|EPR|20261120110000+0100||ADT^A40^ADT_A40|{control_id}|P|2.5\r"
            "EVN|A40|20261120110000+0100\r"
            f"PID|1||{surviving}||Muster^Anna||19800517|F\r"
            f"MRG|{retired}\r").encode()


def cx(value: str, oid: str) -> str:
    return f"{value}^^^X&{oid}&ISO^PI"


send = send_one


def refusals(gateway, since: int) -> list[tuple[str, str]]:
    return [(r["subtype"][0]["code"], r["outcome"]) for r in gateway.services.auditor.ledger.all_records()[since:]]


@pytest.mark.parametrize(("surviving", "retired", "field"), [
    (cx("L-1", OWN), cx("B-2", OTHER), "MRG^1^1"),  # retires another institution's patient id
    (cx("B-1", OTHER), cx("L-2", OWN), "PID^1^3"),  # keeps another institution's
    (cx("L-1", OWN), cx(OTHER_SPID, SPID_OID), "MRG^1^1"),  # names the retired patient by EPR-SPID
    (cx(SPID, SPID_OID), cx("L-2", OWN), "PID^1^3"),  # the surviving one by EPR-SPID
])
def test_a_merge_outside_the_senders_authorities_is_ae_changes_nothing_and_is_audited(bridge, surviving,
                                                                                      retired, field):
    gateway, address = bridge
    before = row_counts(gateway.runtime)
    records = len(gateway.services.auditor.ledger.all_records())

    ack = send(address, a40("M-1", surviving, retired))

    err = ack_fields(ack)["ERR"]
    assert ack_fields(ack)["MSA"][1:3] == ["AE", "M-1"]
    assert (err[2], err[4]) == (field, "E")
    assert "L-1" not in ack.decode() and "B-2" not in ack.decode()  # authorities named, never a patient's id
    assert {**row_counts(gateway.runtime), "mllp_answer": 0} == {**before, "mllp_answer": 0}
    assert refusals(gateway, records) == [("HL7v2 ADT^A40", "4")]


def test_each_sender_merges_within_its_own_authority(bridge):
    gateway, address = bridge
    hospital = send(address, a40("M-2", cx("L-1", OWN), cx("L-2", OWN)))
    assert ack_fields(hospital)["MSA"][1:3] == ["AA", "M-2"]
    assert row_counts(gateway.runtime)["patient_link"] == 1


def test_the_clinic_merges_its_own_ids(bridge):
    gateway, address = bridge
    clinic = send(address, a40("M-3", cx("B-1", OTHER), cx("B-2", OTHER), facility="CLINIQUE-BRIG"))
    assert ack_fields(clinic)["MSA"][1:3] == ["AA", "M-3"]
    assert row_counts(gateway.runtime)["patient_link"] == 1


def test_a_sender_without_any_authority_merges_nothing(tmp_path):
    from conftest import sqlite_url

    bare = {"facility": "LABO-SANS", "user_id": "labo", "principal_gln": "7601000000002"}
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path, bare)) as gateway:
        gateway.register_patient()
        gateway.register_patient(spid=OTHER_SPID, local_id="L-2", family="Muster", given="Annette")
        with running_listener(gateway.runtime) as address:
            ack = send(address, a40("M-4", cx("L-1", OWN), cx("L-2", OWN), facility="LABO-SANS"))
        assert ack_fields(ack)["MSA"][1:3] == ["AE", "M-4"]
        assert row_counts(gateway.runtime)["patient_link"] == 0
