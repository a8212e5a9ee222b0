"""ITI-67's plain SQL: every value bound (never in the text), both dialects' placeholders, and on
SQLite the count and the page read the covering index only (the reason the statements exist)."""

from __future__ import annotations

from datetime import datetime

import orjson
import pytest

from adapters.cara import fhir_mapping
from adapters.cara.mhd_search import DateFilter, DocumentQuery, TokenFilter
from adapters.cara.store import search_sql
from adapters.cara.store.database import make_engine, migrate

HOSTILE = "x' OR '1'='1"


def full_query() -> DocumentQuery:
    return DocumentQuery(
        patient_pid=HOSTILE, statuses=("current",), confidentiality=("normal", "restricted"),
        tokens=(TokenFilter("type", (("http://snomed.info/sct", HOSTILE), (None, "419891008"))),
                TokenFilter("category", (("", None),))),
        dates=(DateFilter("date", "ge", datetime(2026, 1, 1), datetime(2026, 1, 2)),
               DateFilter("period", "eq", datetime(2026, 2, 1), datetime(2026, 2, 2))),
        offset=0, count=10)


@pytest.mark.parametrize("dialect,placeholder", [("sqlite", "?"), ("postgresql", "%s")])
def test_values_are_bound_never_written_into_the_statement(dialect, placeholder):
    statements = search_sql.build(full_query(), dialect=dialect)
    for sql in (statements.count_sql, statements.page_sql):
        assert HOSTILE not in sql and "2026" not in sql
    assert statements.count_sql.count(placeholder) == len(statements.params)
    assert statements.page_sql.count(placeholder) == len(statements.params) + 2  # limit, offset
    assert statements.params[0] == HOSTILE  # the patient, first (the merged-patients CTE)
    expected_dates = ["2026-01-01 00:00:00.000000", "2026-02-01 00:00:00.000000", "2026-02-02 00:00:00.000000"]
    if dialect == "sqlite":  # SQLAlchemy's stored text form, so that text comparison is date comparison
        assert [p for p in statements.params if str(p).startswith("2026")] == expected_dates
    else:
        assert datetime(2026, 1, 1) in statements.params


def test_no_visible_level_matches_nothing():
    query = DocumentQuery(patient_pid="p", confidentiality=())
    assert "1 = 0" in search_sql.build(query, dialect="sqlite").count_sql


def test_on_sqlite_the_count_and_the_page_read_the_covering_index_only(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'plan.sqlite3'}")
    migrate(engine)
    query = DocumentQuery(patient_pid="p", statuses=("current",), confidentiality=("normal",),
                          dates=(DateFilter("period", "ge", datetime(2026, 1, 1), datetime(2026, 1, 2)),))
    statements = search_sql.build(query, dialect="sqlite")
    connection = engine.raw_connection()
    try:
        for sql, params in ((statements.count_sql, statements.params),
                            (statements.page_sql, (*statements.params, 10, 0))):
            plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params).fetchall())
            assert "SEARCH e USING COVERING INDEX ix_document_entry_search (patient_pid=?)" in plan, plan
    finally:
        connection.close()
        engine.dispose()


def test_the_assembled_searchset_is_the_searchset():
    resources = [{"resourceType": "DocumentReference", "id": f"d{n}", "status": "current"} for n in range(3)]
    base = "https://gateway.example/fhir"
    entries = [orjson.dumps(fhir_mapping.search_match(r, base_url=base)) for r in resources]
    assembled = orjson.loads(fhir_mapping.searchset_json(entries, total=7, self_url=f"{base}/x", next_url=f"{base}/y"))
    expected = fhir_mapping.searchset(resources, total=7, self_url=f"{base}/x", next_url=f"{base}/y", base_url=base)
    assert assembled.pop("id") and expected.pop("id")
    assert assembled == expected | {"meta": {"profile": [fhir_mapping.PROFILE_FIND_RESPONSE]}}  # ITI-67 names it
    empty = orjson.loads(fhir_mapping.searchset_json([], total=0, self_url=f"{base}/x", next_url=None))
    assert "entry" not in empty and empty["total"] == 0  # FHIR JSON has no empty arrays


def test_a_cursor_page_is_a_keyset_after_its_position_counted_through_its_snapshot(tmp_path):
    """(created_seq, id) strictly after the previous page's last entry, newest first; the count and the
    page both keep to the first page's snapshot (created_seq <= through), still on the covering index."""
    query = DocumentQuery(patient_pid="p", confidentiality=("normal",), after=(50, "m"), through=90)
    statements = search_sql.build(query, dialect="sqlite")

    assert statements.params == ("p", "normal", 90)
    assert statements.page_params == ("p", "normal", 90, 50, 50, "m")
    assert "(e.created_seq < ? OR (e.created_seq = ? AND e.id < ?))" in statements.page_sql
    assert "e.id < ?" not in statements.count_sql
    engine = make_engine(f"sqlite:///{tmp_path / 'keyset.sqlite3'}")
    migrate(engine)
    connection = engine.raw_connection()
    try:
        connection.execute("PRAGMA foreign_keys = OFF")  # the index rows alone, without their patient
        connection.executemany(
            "INSERT INTO document_entry (id, unique_id, patient_pid, status, confidentiality, created_seq, "
            "submission_set_id, sealed_key, sealed) VALUES (?, ?, 'p', 'current', 'normal', ?, 's', x'00', x'00')",
            [(entry_id, f"u-{entry_id}", seq) for entry_id, seq in
             (("a", 10), ("m", 50), ("z", 50), ("b", 50), ("c", 70), ("d", 95))])
        page = connection.execute(statements.page_sql, (*statements.page_params, 10, 0)).fetchall()
        total = connection.execute(statements.count_sql, statements.params).fetchone()[0]
        plan = " | ".join(row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {statements.page_sql}",
                                                               (*statements.page_params, 10, 0)).fetchall())
    finally:
        connection.close()
        engine.dispose()
    assert [(row[0], row[3]) for row in page] == [("b", 50), ("a", 10)]  # after (50, "m"): not z, m, c, d
    assert total == 5  # d (95) arrived after the first page
    assert "SEARCH e USING COVERING INDEX ix_document_entry_search (patient_pid=?" in plan, plan
