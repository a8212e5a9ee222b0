"""Nothing readable at rest: no document plaintext, no patient name, no SPID in the data directory
or in the database rows; key rotation keeps every document readable."""

from pathlib import Path

import pytest
from sqlalchemy import text

from adapters.cara.crypto import Keyring
from adapters.cara.store.key_rotation import rewrap_data_keys
from adapters.cara.store.schema import metadata
from conftest import SPID
from functional.helpers import document_ids
from gateway.samples import pdf_document, provide_bundle

BODY_MARKER = "Diagnosis-Zebra-Quokka-4711"
FAMILY, GIVEN, LOCAL_ID = "Zwygart", "Philomena", "LOCAL-778899"
# The SPID is not among them: the audit ledger names the patient by SPID, as the CH:ATC trail shows it
# (see docs/design-notes.md); the document tables never hold it (test_no_spid_in_any_document_table).
NEEDLES = [BODY_MARKER, FAMILY, GIVEN, LOCAL_ID]


def store_sensitive_data(gateway) -> list[str]:
    gateway.register_patient(local_id=LOCAL_ID, family=FAMILY, given=GIVEN)
    documents = [{"title": f"Letter about {FAMILY}", "local_id": LOCAL_ID, "patient_family": FAMILY,
                  "patient_given": GIVEN, "content": pdf_document("Letter", [BODY_MARKER] * 20)}]
    return document_ids(gateway.provide(provide_bundle(spid=SPID, documents=documents)).json())


def raw_database_text(gateway) -> bytes:
    """Every row of every table as the database renders it (bytea as hex, so search hex too)."""
    with gateway.runtime.engine.connect() as connection:
        rows = [connection.execute(text(f"SELECT CAST(t AS text) FROM {name} t")).scalars().all()
                for name in metadata.tables]
    return "\n".join(r for table in rows for r in table).encode()


def needles_in(haystack: bytes) -> list[str]:
    return [n for n in NEEDLES if n.encode() in haystack or n.encode().hex().encode() in haystack.lower()]


def test_no_plaintext_in_the_data_directory(sqlite_gateway):
    store_sensitive_data(sqlite_gateway)
    with sqlite_gateway.runtime.engine.connect() as connection:  # the WAL may still hold the latest pages
        wal_pages = connection.execute(text("PRAGMA wal_checkpoint")).one()

    files = [p for p in Path(sqlite_gateway.data_dir).rglob("*") if p.is_file()]
    found = {p.name: needles_in(p.read_bytes()) for p in files}

    assert wal_pages[0] == 0  # checkpoint not blocked: the database file holds every row
    assert "gateway.sqlite3" in found
    assert {name: n for name, n in found.items() if n} == {}


@pytest.mark.postgres
def test_no_plaintext_in_the_postgresql_rows(pg_gateway):
    store_sensitive_data(pg_gateway)

    assert needles_in(raw_database_text(pg_gateway)) == []


def test_no_spid_in_any_document_table(gateway):
    store_sensitive_data(gateway)
    document_tables = [t for t in metadata.tables if t.startswith(("document_", "submission_"))]

    with gateway.runtime.engine.connect() as connection:
        for table in document_tables:
            columns = metadata.tables[table].columns
            for row in connection.execute(metadata.tables[table].select()):
                for column, value in zip(columns, row):
                    rendered = value if isinstance(value, bytes) else str(value).encode()
                    assert SPID.encode() not in rendered, f"{table}.{column.name}"


def test_key_rotation_rewraps_without_touching_ciphertexts_and_documents_stay_readable(gateway):
    ids = store_sensitive_data(gateway)
    keyring_path = gateway.runtime.settings.keyring_path
    with gateway.runtime.engine.connect() as connection:
        before = connection.execute(text("SELECT entry_id, sealed FROM document_body")).all()
    new_key = Keyring.add_key_to_file(keyring_path)
    rotated = Keyring.load(keyring_path)

    counts = rewrap_data_keys(engine=gateway.runtime.engine, keyring=rotated)

    # onboarding (201, 202, 203) and the test HCP's grant: four policies
    assert counts == {"patient": 1, "submission_set": 1, "document_entry": 1, "document_body": 1,
                      "consent_policy": 4, "patient_notification": 0, "identity_review": 0,
                      "mllp_held_message": 0, "document_entry_version": 0, "migration_held": 0}
    with gateway.runtime.engine.connect() as connection:
        after = connection.execute(text("SELECT entry_id, sealed, sealed_key FROM document_body")).all()
    assert [(r.entry_id, r.sealed) for r in after] == [(r.entry_id, r.sealed) for r in before]
    assert all(r.sealed_key.startswith(new_key.encode() + b":") for r in after)
    # the running gateway loaded the keyring before the new key existed, and still reads
    response = gateway.client.get(f"/fhir/Binary/{ids[0]}", headers=gateway.as_hcp())
    assert response.status_code == 200
    assert BODY_MARKER.encode() in response.content
    assert set(rewrap_data_keys(engine=gateway.runtime.engine, keyring=rotated).values()) == {0}
