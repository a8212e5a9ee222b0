"""What the metrics count on the faces other than FHIR, and the state a scrape reads from the store: HL7 v2
messages per trigger and ACK code, each stored document also as the exchange its audit record names
(ITI-65) and each refusal as `HL7v2 <trigger>`, any message type a sender invents as one label; held
messages, the migration journal per outcome, the witness's lag."""

from __future__ import annotations

from audit.witness import WitnessWriter
from conftest import sqlite_url
from functional.mllp_helpers import ack_fields, mdm, running_bridge, send_one
from gateway import metrics
from gateway.metrics_listener import store_sources
from gateway.migration.journal import Journal, JournalRow


def value(name: str, **labels) -> float:
    return metrics.LOCAL.get_sample_value(name, labels) or 0.0


def test_hl7_messages_are_counted_per_trigger_and_an_invented_type_is_one_label(tmp_path):
    before = {key: value(*key[:1], **dict(key[1])) for key in (
        ("epr_mllp_messages_total", (("trigger", "MDM^T02"), ("ack", "AA"))),
        ("epr_mllp_messages_total", (("trigger", "MDM^T02"), ("ack", "AE"))),
        ("epr_mllp_messages_total", (("trigger", "other"), ("ack", "AR"))),
        ("epr_exchanges_total", (("transaction", "ITI-65"), ("outcome", "success"))),
        ("epr_exchanges_total", (("transaction", "HL7v2 MDM^T02"), ("outcome", "minor-failure"))))}
    others_before = sum(value("epr_exchanges_total", transaction="HL7v2 other", outcome=o)
                        for o in metrics.OUTCOMES.values())
    with running_bridge(tmp_path, sqlite_url(tmp_path)) as (_gateway, address):
        stored = send_one(address, mdm(control_id="M-1", unique_id="urn:oid:2.25.9001").encode())
        refused = send_one(address, mdm(control_id="M-3", unique_id="").encode())  # no TXA-12: AE
        invented = send_one(address, mdm(control_id="M-2", unique_id="urn:oid:2.25.9002").replace(
            "MDM^T02", "ZZZ^Q99").encode())

    assert [ack_fields(a)["MSA"][1] for a in (stored, refused, invented)] == ["AA", "AE", "AR"]
    assert {key: value(*key[:1], **dict(key[1])) - was for key, was in before.items()} == dict.fromkeys(before, 1)
    assert sum(value("epr_exchanges_total", transaction="HL7v2 other", outcome=o)
               for o in metrics.OUTCOMES.values()) == others_before + 1
    labels = {s.labels.get("transaction") for family in metrics.LOCAL.collect() for s in family.samples}
    assert "HL7v2 ZZZ^Q99" not in labels


def families(source) -> dict:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value for family in source() for s in family.samples}


def test_the_store_state_a_scrape_reads(tmp_path):
    with running_bridge(tmp_path, sqlite_url(tmp_path)) as (gateway, _address):
        settings = gateway.runtime.settings
        journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
        journal.record_now([JournalRow(source=f"m/IHE_XDM/S/D{n}", media="m", outcome=outcome)
                            for n, outcome in enumerate(["migrated", "migrated", "rejected"])])
        sources = store_sources(settings)
        lag_before = families(sources["witness"])
        WitnessWriter(engine=gateway.runtime.engine, path=settings.audit_witness_path).write_once()
        lag_after = families(sources["witness"])
        migration = families(sources["migration"])
        held = families(sources["mllp-held"])

    assert migration == {("epr_migration_documents", (("outcome", "migrated"),)): 2,
                         ("epr_migration_documents", (("outcome", "rejected"),)): 1}
    assert held == {("epr_mllp_held_messages", ()): 0}
    assert lag_before[("epr_audit_witness_lag_records", ())] > 0  # records signed, none witnessed yet
    assert lag_after[("epr_audit_witness_lag_records", ())] == 0
