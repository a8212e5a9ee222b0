"""The page names a document by its type code, from the whole CH EPR value set DocumentEntry.typeCode
(urn:oid:2.16.756.5.30.1.127.3.10.1.27, ch-term 2021-04-01), each a catalogue message translated in every
language (test_catalogues holds the translations); a code outside the value set is "Other document"."""

from babel.support import Translations

from gateway.portal import document_types
from gateway.portal.document_rows import document_row
from gateway.portal.directory import Directory
from gateway.portal.pages import LOCALES

# The value set's codes, as ch-term publishes them (the Swiss extension's imaging order under its own system).
VALUE_SET = {
    "http://snomed.info/sct": {"371529009", "419891008", "721965002", "721966001", "4201000179104", "737427001",
                               "765492005", "773130005", "736055001", "761938008", "722446000", "772786005",
                               "373942005", "371535009", "445300006", "445418005", "371530004", "4241000179101",
                               "371526002", "371532007", "900000000000471006", "41000179103", "371528001",
                               "721912009"},
    "urn:oid:2.16.756.5.30.1.127.3.4": {"2161000195103"},
}


def test_every_code_of_the_value_set_has_its_own_label():
    assert {(s, c) for s, codes in VALUE_SET.items() for c in codes} == set(document_types.TYPES)
    assert len(set(document_types.TYPES.values())) == len(document_types.TYPES)


def test_each_label_reads_differently_in_french_and_german():
    for lang in ("fr", "de"):
        translations = Translations.load(str(LOCALES), [lang], domain="messages")
        english = [label for label in document_types.TYPES.values()
                   if translations.gettext(label) == label and label != "Image"]
        assert english == [], lang


def test_a_code_outside_the_value_set_is_other_and_keeps_the_senders_words_apart():
    resource = {"id": "x", "type": {"coding": [{"system": "http://snomed.info/sct", "code": "371525003",
                                                "display": "Clinical procedure report"}]}}
    row = document_row(resource, directory=Directory())
    assert (row["type"], row["type_as_sent"]) == ("Other document", "Clinical procedure report")
    known = document_row({"id": "y", "type": {"coding": [{"system": "http://snomed.info/sct", "code": "371530004",
                                                          "display": "Clinical consultation report"}]}},
                         directory=Directory())
    assert (known["type"], known["type_as_sent"]) == ("Specialist consultation report", None)
    assert document_types.search_token("2161000195103") == "urn:oid:2.16.756.5.30.1.127.3.4|2161000195103"
    assert document_types.search_token("drop table") is None
