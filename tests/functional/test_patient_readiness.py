"""One rule for "is this patient ready to receive documents", shared by the HL7 v2 bridge and the
migration (issue 23 item 3, issue 27 item 4): the same holds with the same reasons, each naming what
releases it; identity holds open a review case that /admin/identity-reviews lists and whose resolution
releases them."""

from __future__ import annotations

import json

import orjson
import pytest
from typer.testing import CliRunner

from adapters.infomed.generate.export import generate
from adapters.infomed.xdm.codes import CodeTables
from conftest import HCP_GLN, LOCAL_SYSTEM, POLICY_ADMIN, running_gateway, sqlite_url
from functional.mllp_helpers import ack_fields, cli_environment, mdm, running_bridge, send_one
from functional.mllp_helpers import stored_unique_ids as stored
from gateway.cli import app
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.samples import patient_feed

NEW_SPID = "761337610455555558"


@pytest.fixture
def bridge(tmp_path, database_url):
    with running_bridge(tmp_path, database_url) as running:
        yield running


def send(address, message: str) -> bytes:
    return send_one(address, message.encode())


def held(gateway) -> list[tuple[str, str]]:
    from gateway.wiring import hl7_exchange

    return [(m.control_id, m.reason) for m in hl7_exchange(gateway.runtime).held_messages()]


def admin(gateway) -> dict:
    return gateway.tokens.headers(gateway.tokens.mint(role="PADM", user_id="padm-1", name="Admin"))


def reviews(gateway) -> list[dict]:
    response = gateway.client.get("/admin/identity-reviews", headers=admin(gateway))
    assert response.status_code == 200, response.text
    return response.json()["reviews"]


def feed_without_onboarding(gateway, *, spid: str, local_id: str) -> None:
    body = patient_feed(spid=spid, local_system=LOCAL_SYSTEM, local_id=local_id, family="Sans", given="Dossier",
                        birth_date="1950-01-01", gender="male")
    response = gateway.client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{local_id}", content=orjson.dumps(body),
                                  headers=gateway.as_hcp())
    assert response.status_code == 201, response.text


# -- the bridge ----------------------------------------------------------------------------------
def test_a_live_document_for_an_epr_not_yet_opened_is_held_and_onboarding_releases_it(bridge):
    gateway, address = bridge
    feed_without_onboarding(gateway, spid=NEW_SPID, local_id="L-9")
    ack = send(address, mdm(control_id="O-1", unique_id="urn:oid:2.25.9301", local_id="L-9", family="Sans",
                            given="Dossier", birth="19500101", sex="M"))

    msa = ack_fields(ack)["MSA"]
    assert msa[1:3] == ["AA", "O-1"]  # accepted and kept: not refused, not "send it again"
    assert "not opened" in msa[3] and "epr-gateway held --release" in msa[3]
    assert held(gateway) == [("O-1", "epr-not-opened")]

    gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=NEW_SPID)
    gateway.grant(NEW_SPID, HCP_GLN, "normal")
    assert held(gateway) == []
    assert stored(gateway, NEW_SPID) == {"urn:oid:2.25.9301"}


def test_a_document_whose_birth_date_differs_is_held_opens_a_review_and_resolving_it_stores_it(bridge):
    gateway, address = bridge
    ack = send(address, mdm(control_id="B-1", unique_id="urn:oid:2.25.9401", birth="19800518"))

    msa = ack_fields(ack)["MSA"]
    assert msa[1:3] == ["AA", "B-1"] and "birth date" in msa[3] and "/admin/identity-reviews" in msa[3]
    assert "19800518" not in ack.decode() and "1980-05-18" not in ack.decode()  # fields named, never values
    assert held(gateway) == [("B-1", "identity-conflict")]
    [case] = reviews(gateway)
    assert case["reason"] == "document-demographics-differ" and case["patient"].startswith("Patient/")
    assert case["id"] in msa[3]
    # the case is about that document's claim: the patient's documents that agree with the MPI are stored
    other = send(address, mdm(control_id="B-2", unique_id="urn:oid:2.25.9402"))
    assert ack_fields(other)["MSA"][1:4] == ["AA", "B-2", "document stored"]
    assert held(gateway) == [("B-1", "identity-conflict")]
    assert stored(gateway) == {"urn:oid:2.25.9402"}

    resolved = gateway.client.post(f"/admin/identity-reviews/{case['id']}/resolve", headers=admin(gateway))

    assert resolved.status_code == 200, resolved.text
    assert held(gateway) == []
    assert stored(gateway) == {"urn:oid:2.25.9401", "urn:oid:2.25.9402"}
    assert reviews(gateway) == []
    # the reviewed identity is accepted from now on: the next document with it is stored at once
    again = send(address, mdm(control_id="B-3", unique_id="urn:oid:2.25.9403", birth="19800518"))
    assert ack_fields(again)["MSA"][1:4] == ["AA", "B-3", "document stored"]


def test_bridge_held_names_the_way_out_and_release_processes_them_again(bridge, monkeypatch):
    gateway, address = bridge
    feed_without_onboarding(gateway, spid=NEW_SPID, local_id="L-9")
    send(address, mdm(control_id="W-1", unique_id="urn:oid:2.25.9501", local_id="L-9", family="Sans",
                      given="Dossier", birth="19500101", sex="M"))
    cli_environment(monkeypatch, gateway)

    listed = CliRunner().invoke(app, ["bridge", "held"])
    assert listed.exit_code == 0, listed.output
    assert "epr-not-opened" in listed.output and "onboarding" in listed.output
    assert "epr-gateway held --release" in listed.output

    still = CliRunner().invoke(app, ["bridge", "held", "--release"])
    assert still.exit_code == 0 and "1 held" in still.output

    # onboarded with nobody following (as by another process): nothing released it; the command does
    gateway.services.policies.onboarded.clear()
    gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=NEW_SPID)
    assert held(gateway) == [("W-1", "epr-not-opened")]
    released = CliRunner().invoke(app, ["bridge", "held", "--release"])
    assert released.exit_code == 0, released.output
    assert "1 released" in released.output and held(gateway) == []


# -- the migration, by the same rule ---------------------------------------------------------------
def migrate(runtime, sources, *, retry: bool = False) -> dict:
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN),
                       batch=8, workers=0)
    job.retry() if retry else job.run(sources)
    return {row.source: row for row in journal.rows_for(s.name for s in sources).values()}


def test_the_migration_holds_an_unopened_epr_with_the_bridges_reason_and_retry_releases_it(tmp_path):
    export = tmp_path / "export"
    made = generate(out=export, documents=6, patients=2, seed=5)
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, made.patients_file, onboard=False)
        rows = migrate(gateway.runtime, made.media)

        assert {(r.outcome, r.reason_code) for r in rows.values()} == {("held", "epr-not-opened")}
        assert all("epr-gateway held --release --as-gln" in r.reason for r in rows.values())

        feed_patients(gateway.services, made.patients_file, onboard=True)
        rows = migrate(gateway.runtime, made.media, retry=True)
        assert {r.outcome for r in rows.values()} == {"migrated"}


def test_the_migration_opens_a_review_case_for_differing_demographics_and_resolving_it_releases(tmp_path):
    export = tmp_path / "export"
    made = generate(out=export, documents=40, patients=4, seed=3, quirks=1.0)
    manifest = json.loads(made.manifest_file.read_text())
    conflicting = {s for s, d in manifest["documents"].items() if d["quirk"] == "conflicting-demographics"}
    assert conflicting
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, made.patients_file, onboard=True)
        rows = migrate(gateway.runtime, made.media)

        assert {(rows[s].outcome, rows[s].reason_code) for s in conflicting} == {("held", "identity-conflict")}
        cases = reviews(gateway)
        assert cases and {c["reason"] for c in cases} == {"document-demographics-differ"}
        assert all(any(c["id"] in rows[s].reason for c in cases) and "/admin/identity-reviews" in rows[s].reason
                   for s in conflicting)
        for case in cases:
            response = gateway.client.post(f"/admin/identity-reviews/{case['id']}/resolve", headers=admin(gateway))
            assert response.status_code == 200

        rows = migrate(gateway.runtime, made.media, retry=True)
        assert {rows[s].outcome for s in conflicting} == {"migrated"}


def test_a_dry_run_reports_a_conflict_but_opens_no_review_case(tmp_path):
    export = tmp_path / "export"
    made = generate(out=export, documents=40, patients=4, seed=3, quirks=1.0)
    manifest = json.loads(made.manifest_file.read_text())
    conflicting = {s for s, d in manifest["documents"].items() if d["quirk"] == "conflicting-demographics"}
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, made.patients_file, onboard=True)
        journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
        job = MigrationJob(exchange=gateway.services.exchange,
                           imports=ImportExchange(exchange=gateway.services.exchange, dry_run=True), journal=journal,
                           tables=CodeTables.load(), principal=migration_principal(HCP_GLN), workers=0, dry_run=True)
        job.run(made.media)

        rows = {row.source: row for row in job.dry_rows}
        assert {(rows[s].outcome, rows[s].reason_code) for s in conflicting} == {("held", "identity-conflict")}
        assert all("a review case is opened when it is held" in rows[s].reason for s in conflicting)
        assert reviews(gateway) == []


def test_one_command_lists_and_releases_what_both_paths_hold_for_the_same_reason(bridge, monkeypatch, tmp_path):
    """`epr-gateway held`: the bridge's message and the migration's documents held for the same reason with
    the same way out; `--release --as-gln` processes both again (`--release` alone: the bridge's only)."""
    gateway, address = bridge
    made = generate(out=tmp_path / "export", documents=3, patients=2, seed=11)
    feed_patients(gateway.services, made.patients_file, onboard=False)
    spids = [next(i["value"] for i in json.loads(line)["identifier"] if i["system"].endswith(".3.10.3"))
             for line in made.patients_file.read_text().splitlines()]
    feed_without_onboarding(gateway, spid=NEW_SPID, local_id="L-9")
    send(address, mdm(control_id="H-1", unique_id="urn:oid:2.25.9601", local_id="L-9", family="Sans",
                      given="Dossier", birth="19500101", sex="M"))
    rows = migrate(gateway.runtime, made.media)
    assert {(r.outcome, r.reason_code) for r in rows.values()} == {("held", "epr-not-opened")}
    assert held(gateway) == [("H-1", "epr-not-opened")]
    cli_environment(monkeypatch, gateway)

    listed = CliRunner().invoke(app, ["held"])
    assert listed.exit_code == 0, listed.output
    assert "1 messages held" in listed.output and "3 documents held: 3 epr-not-opened" in listed.output
    assert listed.output.count("the patient's EPR is opened (onboarding)") == 4  # one message, three documents

    # onboarded with nobody following (as by another process): nothing released them; the one command does
    gateway.services.policies.onboarded.clear()
    for spid in (NEW_SPID, *spids):
        gateway.services.policies.onboard(principal=POLICY_ADMIN, spid=spid)
    journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
    without_gln = CliRunner().invoke(app, ["held", "--release"])
    assert without_gln.exit_code == 0, without_gln.output
    assert "1 released" in without_gln.output and "not released" in without_gln.output
    assert held(gateway) == [] and len(journal.held_summary()) == 3

    released = CliRunner().invoke(app, ["held", "--release", "--as-gln", HCP_GLN])
    assert released.exit_code == 0, released.output
    assert journal.held_summary() == []
    assert {r.outcome for r in journal.rows_for(s.name for s in made.media).values()} == {"migrated"}
    gateway.grant(NEW_SPID, HCP_GLN, "normal")  # what the test reads with
    assert stored(gateway, NEW_SPID) == {"urn:oid:2.25.9601"}
