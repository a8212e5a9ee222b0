"""The Infomed migration on generated exports with quirks: outcomes, idempotency, resumption after
SIGKILL, retry, and what the record shows afterwards (ITI-67, ITI-68, the audit ledger)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.cara.store.schema import document_body, document_entry
from adapters.infomed.generate.export import DOCUMENT_QUIRKS, PATIENT_QUIRKS, generate
from adapters.infomed.xdm.codes import CodeTables
from audit.ledger import verify_ledger
from audit.schema import audit_record
from dataclasses import replace

from adapters.cara.mhd_search import parse_find_request
from conftest import SEARCH, HCP_GLN, POLICY_ADMIN, fresh_postgres_url, running_gateway, sqlite_url
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.migration.report import build_report
from gateway.migration.schema import migration_journal

ROOT = Path(__file__).resolve().parents[2]
SEED = 11


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("infomed") / "export"
    generate(out=out, documents=160, patients=24, seed=SEED, as_zip=True, quirks=0.25, subsets_per_media=12)
    return out


def media(export: Path) -> list[Path]:
    return sorted(export.glob("media-*.zip"))


def manifest(export: Path) -> dict:
    return json.loads((export / "manifest.json").read_text())


def run_migration(runtime, sources, *, tables=(), batch=16, dry_run=False) -> tuple[MigrationJob, dict]:
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    services = runtime.services
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load(list(tables)), principal=migration_principal(HCP_GLN),
                       batch=batch, workers=2, dry_run=dry_run)
    job.run(sources)
    rows = job.dry_rows if dry_run else journal.rows_for(s.name for s in sources).values()
    return job, build_report(rows, code_tables=job.tables.version, dry_run=dry_run)


def without_case_ids(documents: list[dict]) -> list[dict]:
    """The report's documents with identity review case ids written as <case> (each database has its own)."""
    return [{**d, "reason": re.sub(r"case [0-9a-f]{32}", "case <case>", d["reason"] or "")} for d in documents]


def record_state(runtime) -> dict:
    """What the record holds, comparable across databases (entry ids and MPI-PIDs are random)."""
    with runtime.engine.connect() as connection:
        entries = sorted(tuple(r) for r in connection.execute(
            select(document_entry.c.unique_id, document_entry.c.status, document_entry.c.confidentiality)))
        bodies = connection.execute(select(func.count()).select_from(document_body)).scalar_one()
        created = connection.execute(select(func.count()).select_from(audit_record)
                                     .where(audit_record.c.subtype == "ATC_DOC_CREATE")).scalar_one()
    return {"entries": entries, "bodies": bodies, "doc_create_records": created}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def migrated(request, tmp_path_factory, export):
    """One migration per database for the tests that only read what it did (or add nothing)."""
    tmp_path = tmp_path_factory.mktemp(request.param)
    url = sqlite_url(tmp_path) if request.param == "sqlite" else fresh_postgres_url()
    with running_gateway(tmp_path, url) as gateway:
        feed_patients(gateway.services, export / "patients.ndjson", onboard=True)
        job, report = run_migration(gateway.runtime, media(export))
        yield gateway, job, report


def test_every_quirk_gets_its_outcome_and_the_totals_add_up(migrated, export):
    gateway, _, report = migrated
    expected = manifest(export)
    got = {d["source"]: d for d in report["documents"]}

    # the generator put every quirk in (else this test would prove less than it says)
    assert {e["quirk"] for e in expected["documents"].values()} >= set(DOCUMENT_QUIRKS) | set(PATIENT_QUIRKS)
    assert {s: got[s]["outcome"] for s in expected["documents"]} == {
        s: e["outcome"] for s, e in expected["documents"].items()}
    # one entry per source document, one per unreadable part, nothing else; lost documents are covered
    # by the truncated ZIP's entry, whose reason says so
    assert set(got) == set(expected["documents"]) | set(expected["problems"])
    assert {s: got[s]["outcome"] for s in expected["problems"]} == {s: "rejected" for s in expected["problems"]}
    assert expected["lost"] and "truncated" in got[next(s for s, k in expected["problems"].items()
                                                        if k == "truncated-zip")]["reason"]
    totals = report["totals"]
    assert totals["source"] == len(report["documents"]) == sum(v for k, v in totals.items() if k != "source")
    assert totals == {"source": len(got), **Counter({"migrated": 0, "already_present": 0, "superseded": 0,
                                                      "held": 0, "rejected": 0}),
                      **Counter(d["outcome"] for d in got.values())}


def test_each_quirk_names_its_reason(migrated, export):
    _, _, report = migrated
    quirk_of = {s: e["quirk"] for s, e in manifest(export)["documents"].items()}
    reasons = {}
    for document in report["documents"]:
        reasons.setdefault(quirk_of.get(document["source"]), set()).add(document.get("reasonCode"))
    assert reasons["hash-mismatch"] == {"invalid"} and reasons["size-mismatch"] == {"invalid"}
    assert reasons["duplicate-different"] == {"conflict"} and reasons["escaping-uri"] == {"file"}
    assert reasons["unmapped-code"] == {"unmapped-code"} and reasons["unknown-patient"] == {"unknown-patient"}
    assert reasons["no-epr"] == {"no-epr"} and reasons["conflicting-demographics"] == {"identity-conflict"}
    bomb = next(d for d in report["documents"] if d["source"].endswith("SUBSET01/METADATA.XML"))
    assert "DOCTYPE" in bomb["reason"]
    escaping = next(d for d in report["documents"] if quirk_of.get(d["source"]) == "escaping-uri")
    assert escaping["source"].endswith("/../../etc/passwd") and "climbs out" in escaping["reason"]


def test_migrated_documents_are_found_retrieved_byte_for_byte_and_audited(migrated, export):
    gateway, _, report = migrated
    services = gateway.services
    expected = manifest(export)["documents"]
    stored = [d for d in report["documents"] if d["outcome"] in ("migrated", "superseded")]
    by_spid: dict[str, list[str]] = {}
    feed = [json.loads(line) for line in (export / "patients.ndjson").read_text().splitlines()]
    spids = [next(i["value"] for i in p["identifier"] if "127.3.10.3" in i["system"]) for p in feed
             if len(p["identifier"]) == 2]
    for spid in spids:
        found = gateway.find(spid=spid, headers=gateway.tokens.headers(gateway.tokens.patient(spid)),
                             status="current,superseded", _count="100")
        assert found.status_code == 200
        by_spid[spid] = [e["resource"]["masterIdentifier"]["value"] for e in found.json().get("entry", [])]
    as_patient = sorted(u for ids in by_spid.values() for u in ids)
    assert as_patient == sorted({d["uniqueId"] for d in report["documents"]
                                 if d["outcome"] in ("migrated", "superseded", "already_present")})
    assert len(stored) > 50
    # a granted HCP finds them too, and ITI-68 returns the exported bytes
    spid = max(by_spid, key=lambda s: len(by_spid[s]))
    gateway.grant(spid, HCP_GLN, "restricted")
    entries = gateway.find(spid=spid, status="current,superseded", _count="100").json()["entry"]
    assert sorted(e["resource"]["masterIdentifier"]["value"] for e in entries) == sorted(by_spid[spid])
    sources = {d["uniqueId"]: d["source"] for d in stored}
    import zipfile

    for entry in entries:
        source = sources.get(entry["resource"]["masterIdentifier"]["value"])
        if source is None:
            continue  # the second copy of an already present document: its source is the first copy's
        name, member = source.split("/", 1)
        binary = gateway.client.get(f"/fhir/Binary/{entry['resource']['id']}", headers=gateway.as_hcp())
        with zipfile.ZipFile(export / name) as archive:
            assert binary.content == archive.read(member)
    # one ATC_DOC_CREATE per stored document, naming the TCU and the GLN it acted for
    with gateway.runtime.engine.connect() as connection:
        records = [json.loads(r) for r in connection.execute(select(audit_record.c.record_json).where(
            audit_record.c.subtype == "ATC_DOC_CREATE")).scalars()]
    assert len(records) == len(stored)
    assert all("infomed-migration" in json.dumps(r) and HCP_GLN in json.dumps(r) for r in records)
    assert verify_ledger(engine=gateway.runtime.engine, public_keys=services.auditor.ledger.public_keys).ok
    assert all(expected[d["source"]]["outcome"] == d["outcome"] for d in stored)


def test_a_second_run_adds_nothing(migrated, export):
    gateway, _, report = migrated
    before = record_state(gateway.runtime)

    job, again = run_migration(gateway.runtime, media(export))

    assert job.counts.documents == 0 and job.counts.skipped == len(report["documents"])
    assert again == report
    assert record_state(gateway.runtime) == before


def test_the_same_documents_under_other_media_names_are_already_present(migrated, export, tmp_path):
    gateway, _, report = migrated
    copies = []
    for path in media(export)[:2]:
        copies.append(tmp_path / f"again-{path.name}")
        shutil.copy(path, copies[-1])
    before = record_state(gateway.runtime)

    _, again = run_migration(gateway.runtime, copies)

    first = {d["source"].split("/", 1)[1]: d["outcome"] for d in report["documents"]
             if d["source"].split("/", 1)[0] in {p.name for p in media(export)[:2]}}
    second = {d["source"].split("/", 1)[1]: d["outcome"] for d in again["documents"]}
    assert {s for s, o in second.items() if o == "migrated"} == set()
    assert {s for s, o in first.items() if o in ("migrated", "superseded")} <= {
        s for s, o in second.items() if o in ("already_present", "rejected")}
    assert record_state(gateway.runtime)["entries"] == before["entries"]


def test_held_documents_are_retried_after_the_cause_is_fixed(tmp_path, export):
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        services = gateway.services
        feed_patients(services, export / "patients.ndjson", onboard=True)
        run_migration(gateway.runtime, media(export))
        journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
        held = journal.held_summary()
        unmapped = {s for s, code, _ in held if code == "unmapped-code"}
        assert unmapped and all("NOTFALLBERICHT" in r for _, c, r in held if c == "unmapped-code")
        # the cause is fixed: the code table extended (a later version beside the built-in one)
        table = tmp_path / "site-v2.json"
        table.write_text(json.dumps({"version": "site-v2", "tables": {"typeCode": {
            "2.16.756.5.30.1.127.3.10.1.2|NOTFALLBERICHT": {"system": "http://snomed.info/sct",
                                                           "code": "373942005"}}}}))
        job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                           journal=journal, tables=CodeTables.load([table]), principal=migration_principal(HCP_GLN))
        job.retry()

        still = journal.held_summary()
        assert {s for s, _, _ in still} == {s for s, c, _ in held if c != "unmapped-code"}
        rows = journal.rows_for(p.name for p in media(export))
        assert {rows[s].outcome for s in unmapped} == {"migrated"}
        assert {rows[s].code_tables for s in unmapped} == {"infomed-v1+site-v2"}


def test_a_patient_fed_and_onboarded_later_gets_its_held_documents(tmp_path, export):
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        services = gateway.services
        feed_patients(services, export / "patients.ndjson", onboard=True)
        run_migration(gateway.runtime, media(export))
        journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
        no_epr = [s for s, code, _ in journal.held_summary() if code == "no-epr"]
        assert no_epr
        # open the EPR of every patient without one: a SPID fed through ITI-104, then onboarding
        feed = [json.loads(line) for line in (export / "patients.ndjson").read_text().splitlines()]
        for number, patient in enumerate(p for p in feed if len(p["identifier"]) == 1):
            spid = f"7613376109{number:08d}"
            patient["identifier"].append({"system": "urn:oid:2.16.756.5.30.1.127.3.10.3", "value": spid})
            local = patient["identifier"][0]
            services.identities.register_patient(principal=migration_principal(HCP_GLN),
                                               identifier_param=f"{local['system']}|{local['value']}",
                                               body=json.dumps(patient).encode())
            services.policies.onboard(principal=POLICY_ADMIN, spid=spid)
        job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                           journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN))
        job.retry()

        rows = journal.rows_for(p.name for p in media(export))
        assert {rows[s].outcome for s in no_epr} == {"migrated"}
        assert not [s for s, code, _ in journal.held_summary() if code == "no-epr"]


def test_a_dry_run_reports_and_stores_nothing(tmp_path, export):
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, export / "patients.ndjson", onboard=True)
        before = record_state(gateway.runtime)

        _, report = run_migration(gateway.runtime, media(export), dry_run=True)

        assert report["dryRun"] and report["totals"]["source"] == len(report["documents"])
        assert report["totals"]["held"] > 0 and report["totals"]["rejected"] > 0
        assert record_state(gateway.runtime) == before
        with gateway.runtime.engine.connect() as connection:
            assert connection.execute(select(func.count()).select_from(migration_journal)).scalar_one() == 0


def _cli(data_dir: Path, *args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false"}
    return subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                            **kwargs)


def process_group_ended(leader: int, timeout: float = 30) -> bool:
    """Whether every process of the command's group (its readers, multiprocessing's helper) is gone."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.killpg(leader, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    os.killpg(leader, signal.SIGKILL)  # the test fails below; nothing is left running either way
    return False


def test_a_run_killed_with_sigkill_and_resumed_ends_like_an_uninterrupted_one(tmp_path, export):
    sources = [str(p) for p in media(export)]
    # the uninterrupted run
    with running_gateway(tmp_path / "whole", sqlite_url(tmp_path / "whole")) as whole:
        feed_patients(whole.services, export / "patients.ndjson", onboard=True)
        _, uninterrupted = run_migration(whole.runtime, media(export))
        expected_state = record_state(whole.runtime)
    # the interrupted one, through the command line, killed part-way
    with running_gateway(tmp_path / "cut", sqlite_url(tmp_path / "cut")) as cut:
        feed_patients(cut.services, export / "patients.ndjson", onboard=True)
        data_dir = cut.data_dir
        process = _cli(data_dir, "migrate", *sources, "--as-gln", HCP_GLN, "--batch", "3", "--workers", "1",
                       "--no-progress")
        journaled = 0
        deadline = time.monotonic() + 60
        with cut.runtime.engine.connect() as connection:
            while journaled < 20 and time.monotonic() < deadline and process.poll() is None:
                time.sleep(0.02)
                journaled = connection.execute(select(func.count()).select_from(migration_journal)).scalar_one()
                connection.rollback()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert process.returncode == -signal.SIGKILL
        assert process_group_ended(process.pid)  # its reader processes saw it go and ended too
        with cut.runtime.engine.connect() as connection:
            at_kill = connection.execute(select(func.count()).select_from(migration_journal)).scalar_one()
        assert 0 < at_kill < len(uninterrupted["documents"])  # killed part-way, not before or after

        report_file = tmp_path / "report.json"
        resumed = _cli(data_dir, "migrate", *sources, "--as-gln", HCP_GLN, "--report", str(report_file),
                       "--no-progress")
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert "skipped" in out
        assert without_case_ids(json.loads(report_file.read_text())["documents"]) == without_case_ids(
            uninterrupted["documents"])
        assert record_state(cut.runtime) == expected_state
        verify = _cli(data_dir, "audit", "verify")
        assert verify.wait(timeout=120) == 0, verify.stderr.read()
        check = _cli(data_dir, "migrate", "verify", *sources, "--as-gln", HCP_GLN)
        out, err = check.communicate(timeout=300)
        assert check.returncode == 0, err
        in_record = sum(1 for d in uninterrupted["documents"]
                        if d["outcome"] in ("migrated", "superseded", "already_present"))
        assert f"verified: {in_record} migrated documents" in out


def test_what_a_migration_in_another_process_stores_is_seen_by_the_next_search(tmp_path, export):
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:  # one worker: in-process search pages
        feed_patients(gateway.services, export / "patients.ndjson", onboard=True)
        feed = [json.loads(line) for line in (export / "patients.ndjson").read_text().splitlines()]
        spids = [p["identifier"][1]["value"] for p in feed if len(p["identifier"]) == 2]
        headers = {spid: gateway.tokens.headers(gateway.tokens.patient(spid)) for spid in spids}
        before = {spid: gateway.find(spid=spid, headers=headers[spid]).json()["total"] for spid in spids}
        assert set(before.values()) == {0}  # and these empty pages are now remembered

        process = _cli(gateway.data_dir, "migrate", *(str(p) for p in media(export)), "--as-gln", HCP_GLN,
                       "--no-progress")
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err

        after = {spid: gateway.find(spid=spid, headers=headers[spid]).json()["total"] for spid in spids}
        services = gateway.services
        in_store = {}
        for spid in spids:  # the same question asked of the store itself, no page in between
            request = parse_find_request([("patient.identifier", SEARCH + spid)],
                                         string_hash=services.exchange.documents.string_hash)
            query = replace(request.for_patient(services.exchange.patients.pid_for_spid(spid)),
                            confidentiality=("normal", "restricted", "secret"))
            in_store[spid] = services.exchange.documents.search(query)[0]
        assert after == in_store and sum(after.values()) > 50


@pytest.mark.parametrize("args, complaint", [
    (["migrate", "/nonexistent/media.zip", "--as-gln", HCP_GLN], "no such file"),
    (["migrate", "media.zip", "--as-gln", "7601000000003"], "GLN"),
    (["migrate", "media.zip"], "GLN"),
    (["migrate", "verify", "--as-gln", HCP_GLN], "at least one XDM source"),
])
def test_the_command_refuses_bad_arguments_before_touching_anything(args, complaint, tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from gateway.cli import app

    monkeypatch.setenv("EPR_DATA_DIR", str(tmp_path / "data"))
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and complaint in result.output
    assert not (tmp_path / "data").exists()


def test_only_a_technical_user_may_resolve_patients_for_an_import(tmp_path, export):
    """The batch look-up is refused to anyone but the TCU; the TCU gets its answer."""
    from adapters.cara.model import Identifier
    from gateway.auth.errors import AccessRefused
    from gateway.exchanges.imports import PatientRequest

    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, export / "patients.ndjson", onboard=True)
        imports = ImportExchange(exchange=gateway.services.exchange)
        request = PatientRequest(Identifier("urn:oid:2.999.1", "nobody"), None, (), None, None)
        hcp = replace(migration_principal(HCP_GLN), role="HCP", acting_for=None, purpose_of_use="NORM")
        with pytest.raises(AccessRefused, match="technical user"):
            imports.patients_for_import(principal=hcp, requests=[request])
        # the TCU gets the answer: an identifier the MPI does not know holds its documents
        answer = imports.patients_for_import(principal=migration_principal(HCP_GLN), requests=[request])
        assert answer[request].spid is None and answer[request].hold_code == "unknown-patient"
