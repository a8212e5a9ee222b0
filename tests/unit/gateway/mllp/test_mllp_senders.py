"""The senders file: who may send, as which TCU for which HCP; deny by default; certificate binding."""

import json

import pytest

from gateway.mllp.senders import SenderRegistry, SendersFileInvalid, ensure_dev_senders

GLN = "7601000000002"


def registry(*senders) -> SenderRegistry:
    return SenderRegistry.from_json({"senders": list(senders)})


def identify(reg, facility=("HOP", ""), application="KIS", cn=None):
    sender = reg.identify(facility=facility, application=application, certificate_subject=cn)
    return sender and sender.user_id


def test_a_sender_is_its_facility_msh_4_either_component():
    reg = registry({"facility": "2.16.756.5.30.1.999.7", "user_id": "a", "principal_gln": GLN})
    assert identify(reg, facility=("Hopital", "2.16.756.5.30.1.999.7")) == "a"
    assert identify(reg, facility=("Other", "")) is None


def test_an_entry_naming_the_application_is_preferred_and_required():
    reg = registry({"facility": "HOP", "user_id": "whole", "principal_gln": GLN},
                   {"facility": "HOP", "application": "RIS", "user_id": "ris", "principal_gln": GLN})
    assert (identify(reg, application="RIS"), identify(reg, application="KIS")) == ("ris", "whole")
    only_ris = registry({"facility": "HOP", "application": "RIS", "user_id": "ris", "principal_gln": GLN})
    assert identify(only_ris, application="KIS") is None


def test_a_sender_bound_to_a_certificate_needs_that_certificate():
    reg = registry({"facility": "LAB", "user_id": "lab", "principal_gln": GLN, "certificate_subject": "lab-cn"})
    assert identify(reg, facility=("LAB",), cn="lab-cn") == "lab"
    assert identify(reg, facility=("LAB",), cn=None) is None
    assert identify(reg, facility=("LAB",), cn="other") is None


def test_a_certificate_alone_can_identify_a_sender():
    reg = registry({"certificate_subject": "pacs", "user_id": "pacs", "principal_gln": GLN})
    assert identify(reg, facility=("ANY",), cn="pacs") == "pacs"
    assert identify(reg, facility=("ANY",), cn=None) is None


def test_the_sender_acts_as_a_technical_user_for_its_responsible_hcp():
    reg = registry({"facility": "HOP", "user_id": "feed", "principal_gln": GLN, "name": "Hop feed"})
    principal = reg.senders[0].principal("cn-1")
    assert (principal.role, principal.user_id, principal.purpose_of_use, principal.acting_for,
            principal.client_certificate) == ("TCU", "feed", "AUTO", GLN, "cn-1")


def test_no_senders_file_means_nobody_may_send():
    assert SenderRegistry.load(None).senders == ()


@pytest.mark.parametrize("entry", [
    {"user_id": "a", "principal_gln": GLN}, {"facility": "H", "principal_gln": GLN},
    {"facility": "H", "user_id": "a"}, {"facility": "H", "user_id": "a", "principal_gln": "7601000000001"}, "x"])
def test_an_invalid_entry_is_refused_at_start(entry):
    with pytest.raises(SendersFileInvalid):
        registry(entry)


def test_an_unreadable_file_is_refused(tmp_path):
    (tmp_path / "s.json").write_text("{not json")
    with pytest.raises(SendersFileInvalid):
        SenderRegistry.load(tmp_path / "s.json")


def test_the_development_file_names_the_demo_hcp(tmp_path):
    path = ensure_dev_senders(tmp_path, gln=GLN, assigning_authority="urn:oid:2.16.756.5.30.1.999.2.1")
    assert "DEVELOPMENT" in path.name
    sender = SenderRegistry.load(path).senders[0]
    assert (sender.facility, sender.principal_gln, sender.profile.assigning_authority) == (
        "DEMO-HOSPITAL", GLN, "urn:oid:2.16.756.5.30.1.999.2.1")
    assert json.loads(path.read_text())["_comment"].startswith("DEVELOPMENT")


def test_a_sender_merges_in_its_assigning_authority_or_the_ones_it_is_given():
    own = "urn:oid:2.16.756.5.30.1.999.2.1"
    reg = registry({"facility": "A", "user_id": "a", "principal_gln": GLN, "assigning_authority": own},
                   {"facility": "B", "user_id": "b", "principal_gln": GLN, "assigning_authority": own,
                    "assigning_authorities": [own, "urn:oid:2.16.756.5.30.1.999.2.2"]},
                   {"facility": "C", "user_id": "c", "principal_gln": GLN})
    assert [s.authorities for s in reg.senders] == [
        frozenset({own}), frozenset({own, "urn:oid:2.16.756.5.30.1.999.2.2"}), frozenset()]


@pytest.mark.parametrize(("authorities", "words"), [
    (["urn:oid:2.16.756.5.30.1.127.3.10.3"], "EPR-SPID"),  # nobody merges by the national ids
    (["urn:oid:2.16.756.5.32"], "EPR-SPID or AHVN13"),
    ("urn:oid:2.16.756.5.30.1.999.2.1", "a list"),
    (["2.16.756.5.30.1.999.2.1"], "urn:oid:"),
])
def test_assigning_authorities_that_no_sender_may_merge_by_are_refused(authorities, words):
    with pytest.raises(SendersFileInvalid, match=words):
        registry({"facility": "A", "user_id": "a", "principal_gln": GLN, "assigning_authorities": authorities})


def test_a_sender_key_longer_than_the_kept_answers_hold_is_refused():
    with pytest.raises(SendersFileInvalid, match="exceed 200"):
        registry({"facility": "F" * 150, "application": "A" * 40, "user_id": "u" * 20, "principal_gln": GLN})
