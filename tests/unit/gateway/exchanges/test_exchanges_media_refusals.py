"""`media_refusals` (gateway/exchanges/media_refusals.py): XDM parts refused for security reasons reach the
audit ledger as one outcome-4 ITI-32 record per media — counts by kind and the first source of each —
written now or in the caller's transaction (and then rolled back with it)."""

from __future__ import annotations

import pytest

from gateway.exchanges.media_refusals import MediaRefusal, record_refusals, refusal_records
from unit.gateway.exchanges.exchange_world import TCU, runtime, services  # noqa: F401 (fixtures)

REFUSALS = [
    MediaRefusal("export-a.zip", "IHE_XDM/SUBSET01/DOC0001.PDF", "link-out"),
    MediaRefusal("export-b", "METADATA.XML", "doctype"),
    MediaRefusal("export-a.zip", "IHE_XDM/SUBSET01/DOC0002.PDF", "link-out"),
    MediaRefusal("export-a.zip", "../../etc/passwd", "climbing-name"),
    MediaRefusal("export-a.zip", "IHE_XDM/SUBSET01/DOC0003.PDF", "link-out"),
]


def iti32(runtime) -> list[tuple[str, str, str]]:
    return [(e["action"], e["outcome"], e["outcomeDesc"]) for e in runtime.ledger.all_records()
            if any(c["code"] == "ITI-32" for c in e.get("subtype", []))]


def test_one_record_per_media_with_counts_by_kind_and_the_first_source_of_each(services, runtime):
    record_refusals(auditor=services.auditor, principal=TCU, refusals=REFUSALS)

    assert iti32(runtime) == [
        ("C", "4", "XDM media export-a.zip: 4 part(s) refused for security reasons: link-out ×3 (first: "
                   "IHE_XDM/SUBSET01/DOC0001.PDF); climbing-name ×1 (first: ../../etc/passwd)"),
        ("C", "4", "XDM media export-b: 1 part(s) refused for security reasons: doctype ×1 (first: METADATA.XML)"),
    ]


def test_a_description_is_bounded_however_many_kinds_a_media_holds(services):
    many = [MediaRefusal("m", f"{'x' * 120}/{kind}", kind) for kind in
            ("link-out", "link-member", "climbing-name", "special-file", "ambiguous-name", "doctype")]

    [record] = refusal_records(auditor=services.auditor, principal=TCU, refusals=many)

    assert len(record.outcome_description) == 500
    assert record.outcome_description.startswith("XDM media m: 6 part(s) refused for security reasons: link-out ×1")


def test_nothing_to_record_writes_nothing(services, runtime):
    before = len(runtime.ledger.all_records())

    record_refusals(auditor=services.auditor, principal=TCU, refusals=[])

    assert len(runtime.ledger.all_records()) == before


def test_in_the_callers_transaction_the_records_roll_back_with_it(services, runtime):
    with pytest.raises(RuntimeError), runtime.engine.begin() as connection:
        record_refusals(auditor=services.auditor, principal=TCU, refusals=REFUSALS[:1], connection=connection)
        raise RuntimeError("the journal rows failed")
    assert iti32(runtime) == []

    with runtime.engine.begin() as connection:
        record_refusals(auditor=services.auditor, principal=TCU, refusals=REFUSALS[:1], connection=connection)
    assert [outcome for _, outcome, _ in iti32(runtime)] == ["4"]
