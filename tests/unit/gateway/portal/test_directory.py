"""The directory file (EPR_PORTAL_DIRECTORY): professionals, groups and the community's register of
representatives, checked when the gateway starts; one name per identifier, the directory's first."""

import json
from datetime import date

import pytest

from gateway.portal.directory import Directory, DirectoryInvalid, Professional, load_directory

GOOD = {"professionals": [{"gln": "7601000000019", "name": "Dr. Claire Rey", "organisation": "Hôpital de Sion"}],
        "groups": [{"id": "urn:oid:2.16.756.5.30.1.999.7.1", "name": "Médecine interne"}],
        "representatives": [{"id": "rep-jean-7", "name": "Jean Muster", "birth_date": "1955-02-03",
                             "locality": "Sion"}, {"id": "rep-anna", "name": "Anna Zen"}]}


def written(tmp_path, content) -> object:
    path = tmp_path / "directory.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    return path


def test_a_directory_names_each_identifier_and_finds_registered_representatives(tmp_path):
    directory = load_directory(written(tmp_path, GOOD))
    assert [directory.name_of(i) for i in ("7601000000019", "urn:oid:2.16.756.5.30.1.999.7.1", "rep-jean-7",
                                            "rep-nobody", None)] == [
        "Dr. Claire Rey", "Médecine interne", "Jean Muster", None, None]
    assert directory.organisation_of("7601000000019") == "Hôpital de Sion"
    jean = directory.representative("rep-jean-7")
    assert (jean.name, jean.birth_date, jean.locality) == ("Jean Muster", date(1955, 2, 3), "Sion")
    assert directory.representative("rep-anna").birth_date is None


def test_the_directorys_name_wins_over_the_records_and_authors_come_once(tmp_path):
    directory = load_directory(written(tmp_path, GOOD)).with_authors([
        Professional("7601000000033", "Nadia Berclaz"), Professional("7601000000019", "C. Rey"),
        Professional("7601000000033", "N. Berclaz")])
    assert [(p.gln, p.name) for p in directory.professionals] == [
        ("7601000000033", "Nadia Berclaz"), ("7601000000019", "Dr. Claire Rey")]
    assert directory.name_of("7601000000019") == "Dr. Claire Rey"


@pytest.mark.parametrize("representative", [
    {"id": "has space", "name": "X"}, {"id": "", "name": "X"}, {"id": "r" * 65, "name": "X"},
    {"id": "rep-1"}, {"id": "rep-1", "name": "X", "birth_date": "1955-02-30"},
    {"id": "rep-1", "name": "X", "birth_date": "03.02.1955"}, "rep-1"])
def test_a_bad_representative_entry_stops_the_start(tmp_path, representative):
    with pytest.raises(DirectoryInvalid, match=r"representatives\[0\]"):
        load_directory(written(tmp_path, {"representatives": [representative]}))


def test_no_file_is_an_empty_directory():
    assert load_directory(None) == Directory()
