"""The ledger's `professional` column (what a professional's own activity is read by): derived from the
AuditEvent for HCP and ASS only, and filled in for the records written before it existed (migration 0011)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, text

from adapters.cara.store import database
from audit.events import AuditRecord, canonical_json, responsible_professional, to_audit_event
from consent.principal import Principal

GLN, ASSISTANT_GLN, OTHER = "7601000000002", "7601000000019", "7601000000026"
PRINCIPALS = {
    "hcp": (Principal(role="HCP", user_id=GLN, user_id_qualifier="urn:gs1:gln", name="Dr. Favre"), GLN),
    "assistant": (Principal(role="ASS", user_id=ASSISTANT_GLN, user_id_qualifier="urn:gs1:gln", name="Ana",
                            acting_for=GLN, acting_for_name="Dr. Favre"), GLN),
    "emergency": (Principal(role="HCP", user_id=OTHER, user_id_qualifier="urn:gs1:gln", purpose_of_use="EMER",
                            emergency_reason="unconscious at the practice"), OTHER),
    "technical user": (Principal(role="TCU", user_id="bridge", purpose_of_use="AUTO", acting_for=GLN), None),
    "patient": (Principal(role="PAT", user_id="761337610411353650", patient_spid="761337610411353650"), None),
    "policy administrator": (Principal(role="PADM", user_id="padm-1"), None),
}


def event_of(principal: Principal | None) -> dict:
    return to_audit_event(AuditRecord(transaction="ITI-67", principal=principal, source_site="2.16.756.5.30.1.999.1.1",
                                      atc_code="ATC_DOC_SEARCH", patient_spid="761337610411353650",
                                      recorded=datetime(2026, 1, 5, 8, 0, tzinfo=UTC)))


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_the_professional_of_an_event(who):
    principal, expected = PRINCIPALS[who]
    assert responsible_professional(event_of(principal)) == expected


def test_an_unauthenticated_refusal_names_no_professional():
    assert responsible_professional(event_of(None)) is None


def test_migration_0011_fills_in_the_records_written_before_it(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'ledger.sqlite3'}")
    config = Config()
    config.set_main_option("script_location", str(database._MIGRATIONS))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009_versioning")
    names = sorted(PRINCIPALS)
    with engine.begin() as connection:
        for seq, who in enumerate(names, start=1):
            connection.execute(text(
                "INSERT INTO audit_record (seq, recorded_at, patient_key, event_type, subtype, outcome, record_json, "
                "prev_hash, record_hash) VALUES (:seq, '2026-01-05 08:00:00', NULL, 'ITI-67', 'ATC_DOC_SEARCH', '0', "
                ":json, 'x', 'y')"), {"seq": seq, "json": canonical_json(event_of(PRINCIPALS[who][0]))})

    database.migrate(engine)

    with engine.connect() as connection:
        filled = dict(connection.execute(text("SELECT seq, professional FROM audit_record")).all())
    assert {names[seq - 1]: gln for seq, gln in filled.items()} == {who: PRINCIPALS[who][1] for who in names}
