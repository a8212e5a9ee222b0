"""`MetadataExchange` (gateway/exchanges/metadata.py): the patient relabels a document, each change is a
new version with its CH:MHD-1 record; whoever may not read the document gets the answer of a document
that does not exist, and nothing changes."""

from __future__ import annotations

import pytest

from adapters.cara.errors import InvalidInput, UnknownDocumentEntry
from unit.gateway.exchanges.exchange_world import (  # noqa: F401 (fixtures)
    BASE,
    HCP,
    OTHER_HCP,
    PATIENT,
    ledger,
    open_record,
    provide,
    runtime,
    services,
)


def test_the_patient_relabels_a_document_as_a_new_version(services, runtime):
    open_record(services)
    entry_id = provide(services)

    stored = services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="restricted")

    assert (stored.entry_id, stored.version, stored.confidentiality_level) == (entry_id, 2, "restricted")
    assert [(v.version, v.confidentiality_level) for v in services.metadata.history(principal=PATIENT,
                                                                                    entry_id=entry_id)] == [
        (1, "normal"), (2, "restricted")]
    assert ledger(runtime)[-1] == ("CH-MHD-1", "U", "0")


def test_a_professional_without_a_grant_gets_the_answer_of_an_unknown_document(services, runtime):
    open_record(services)
    entry_id = provide(services)

    with pytest.raises(UnknownDocumentEntry) as unreadable:
        services.metadata.change_confidentiality(principal=OTHER_HCP, entry_id=entry_id, level="normal")
    with pytest.raises(UnknownDocumentEntry) as missing:
        services.metadata.change_confidentiality(principal=OTHER_HCP, entry_id="no-such-entry", level="normal")

    assert unreadable.value.message.replace(entry_id, "X") == missing.value.message.replace("no-such-entry", "X")
    assert services.exchange.read_reference(principal=HCP, entry_id=entry_id, base_url=BASE)["meta"]["versionId"] == "1"


def test_an_unknown_level_is_refused_before_anything_is_read(services, runtime):
    open_record(services)
    entry_id = provide(services)
    before = len(ledger(runtime))

    with pytest.raises(InvalidInput, match="confidentiality must be one of"):
        services.metadata.change_confidentiality(principal=PATIENT, entry_id=entry_id, level="top-secret")

    assert ledger(runtime)[before:] == [("CH-MHD-1", "E", "4")]
