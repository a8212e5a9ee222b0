"""One bad document is that document's outcome, never the run's end (issue 22 item 3).

A package of good documents with one document of each bad kind among them — impossible dates of
every sort, a bad patient identifier, a missing mimeType, an empty file, a URI naming a directory
or nothing — plus a package whose METADATA.XML is not XML: every document is in the report once,
the bad ones rejected with the slot, the value and the reason, the good ones (before and after the
bad ones, in the same package and the next) stored. Whatever raises for one document while the
batch is decided or stored is found by splitting the batch: that document alone is rejected. A
dependency failure (the database gone) still stops the run, and the same command continues it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, select, text

from adapters.cara.document_content import EMPTY_DOCUMENT
from adapters.infomed.xdm.codes import CodeTables
from audit.ledger import verify_ledger
from audit.schema import audit_record
from conftest import HCP_GLN, fresh_postgres_url, running_gateway, sqlite_url
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.migration.report import build_report
from gateway.migration.schema import migration_journal
from xdm_packages import Doc, metadata_xml, package_members, patients_file, write_directory, write_zip

ROOT = Path(__file__).resolve().parents[2]

# (document, the slot its reason must name, the value it must show)
BAD_DATES = [
    (Doc(2, slots={"creationTime": ["20231301093000"]}), "creationTime", "20231301093000"),
    (Doc(3, slots={"creationTime": ["20230230093000"]}), "creationTime", "20230230093000"),
    (Doc(4, slots={"creationTime": ["20230101240000"]}), "creationTime", "20230101240000"),
    (Doc(5, slots={"creationTime": ["20161231235961"]}), "creationTime", "20161231235961"),  # a leap second (:60) is stored as :59
    (Doc(6, slots={"creationTime": ["00000101"]}), "creationTime", "00000101"),
    (Doc(7, slots={"creationTime": ["20230101106000"]}), "creationTime", "20230101106000"),
    (Doc(8, slots={"serviceStartTime": ["20231301"]}), "serviceStartTime", "20231301"),
    (Doc(9, slots={"serviceStopTime": ["20230230120000"]}), "serviceStopTime", "20230230120000"),
    (Doc(10, slots={"creationTime": ["2023-01-02"]}), "creationTime", "2023-01-02"),
]
OTHER_BAD = [
    (Doc(11, patient_cx="INF-1^^^&not-an-oid&ISO"), "invalid", "CX"),
    (Doc(12, mime=""), "invalid", "mimeType"),
    (Doc(13, content=b""), "invalid", EMPTY_DOCUMENT),
    (Doc(14, uri="SUB"), "file", "not a regular file (a directory)"),  # SUB/ is a folder of the package
    (Doc(15, uri="NOWHERE.PDF"), "file", "names no file"),
]


def hostile_media(root: Path) -> tuple[list[Path], dict[str, tuple]]:
    """A directory media and a ZIP media with the same packages; returns them and, per source, the
    expected (outcome, reason code, words the reason must contain)."""
    docs = [Doc(1)] + [d for d, *_ in BAD_DATES] + [d for d, *_ in OTHER_BAD] + [Doc(16)]
    expected_package = {d.file_name(): ("migrated", None, ()) for d in (docs[0], docs[-1])}
    for doc, slot, value in BAD_DATES:
        expected_package[doc.file_name()] = ("rejected", "invalid", (slot, value))
    for doc, code, words in OTHER_BAD:
        expected_package[doc.file_name()] = ("rejected", code, (words,))
    members = package_members(docs)
    del members["IHE_XDM/SUBSET01/NOWHERE.PDF"]
    del members["IHE_XDM/SUBSET01/SUB"]
    members["IHE_XDM/SUBSET01/SUB/inside.txt"] = b"a folder where a document is named"
    broken = {"IHE_XDM/SUBSET02/METADATA.XML": metadata_xml([Doc(20)], set_n=2)[:-40],
              "IHE_XDM/SUBSET02/DOC00020.PDF": Doc(20).content}
    after = package_members([Doc(30)], subset="SUBSET03", set_n=3)
    media = [write_directory(root / "media-dir", {**members, **broken, **after}),
             write_zip(root / "media.zip", {k: v for k, v in {**members, **broken, **after}.items()
                                            if not k.startswith("IHE_XDM/SUBSET01/SUB/")})]
    expected = {}
    for path in media:
        for name, outcome in expected_package.items():
            expected[f"{path.name}/IHE_XDM/SUBSET01/{name}"] = outcome
        expected[f"{path.name}/IHE_XDM/SUBSET02/METADATA.XML"] = ("rejected", "metadata", ("not well-formed",))
        expected[f"{path.name}/IHE_XDM/SUBSET03/DOC00030.PDF"] = ("migrated", None, ())
    # In the ZIP, SUB is no folder: the URI names no member at all
    expected["media.zip/IHE_XDM/SUBSET01/SUB"] = ("rejected", "file", ("names no file",))
    # The ZIP's copies of the documents are the directory's: already in the record
    for source, (outcome, code, words) in list(expected.items()):
        if source.startswith("media.zip/") and outcome == "migrated":
            expected[source] = ("already_present", None, ())
    return media, expected


def migrate(runtime, sources, *, workers=2, batch=4, dry_run=False) -> tuple[MigrationJob, dict]:
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN),
                       batch=batch, workers=workers, dry_run=dry_run)
    job.run(sources)
    rows = job.dry_rows if dry_run else journal.rows_for(s.name for s in sources).values()
    return job, build_report(rows, code_tables=job.tables.version, dry_run=dry_run)


def outcomes(report: dict) -> dict[str, tuple]:
    return {d["source"]: (d["outcome"], d.get("reasonCode")) for d in report["documents"]}


def assert_reasons(report: dict, expected: dict[str, tuple]) -> None:
    reasons = {d["source"]: d["reason"] or "" for d in report["documents"]}
    missing = {s: (words, reasons[s]) for s, (_, _, words) in expected.items()
               if not all(w in reasons[s] for w in words)}
    assert missing == {}


@pytest.mark.parametrize("workers", [0, 2])
def test_every_bad_document_is_rejected_alone_and_every_good_one_is_stored(tmp_path, database_url, workers):
    media, expected = hostile_media(tmp_path / "export")
    with running_gateway(tmp_path, database_url) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        _, report = migrate(gateway.runtime, media, workers=workers)

        assert outcomes(report) == {s: (o, c) for s, (o, c, _) in expected.items()}
        assert_reasons(report, expected)
        assert report["totals"]["source"] == len(expected)
        stored = {d["uniqueId"] for d in report["documents"] if d["outcome"] == "migrated"}
        with gateway.runtime.engine.connect() as connection:
            created = connection.execute(select(func.count()).select_from(audit_record).where(
                audit_record.c.subtype == "ATC_DOC_CREATE")).scalar_one()
        assert len(stored) == 3 and created == 3


def test_a_dry_run_rejects_the_same_documents(tmp_path):
    media, expected = hostile_media(tmp_path / "export")
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        _, report = migrate(gateway.runtime, media[:1], dry_run=True)

        directory = {s: (o, c) for s, (o, c, _) in expected.items() if s.startswith("media-dir/")}
        assert outcomes(report) == directory


def poison(monkeypatch, services, *, sealing: set[str], storing: set[str]) -> None:
    """Make sealing (while a batch is decided, before its transaction) and storing (inside the
    batch's transaction) raise for chosen uniqueIds, as an impossible value did deep in either: the
    mechanism under test is what any such error does to its batch, whatever validator would have
    caught that value first."""
    documents = services.exchange.documents
    seal_body = documents.seal_body
    record = Journal.record

    def sealed(document):
        if document.entry.unique_id in sealing:
            raise ValueError("sealing failed on purpose")
        return seal_body(document)

    def recorded(self, connection, rows, held):
        if any(r.unique_id in storing and r.outcome == "migrated" for r in rows):
            raise TypeError("storing failed on purpose")
        return record(self, connection, rows, held)

    monkeypatch.setattr(documents, "seal_body", sealed)
    monkeypatch.setattr(Journal, "record", recorded)


def test_whatever_raises_for_one_document_while_deciding_or_storing_rejects_it_alone(tmp_path, database_url,
                                                                                     monkeypatch):
    docs = [Doc(n) for n in range(1, 12)]
    media = [write_directory(tmp_path / "media-a", package_members(docs))]
    with running_gateway(tmp_path, database_url) as gateway:
        runtime, services = gateway.runtime, gateway.services
        feed_patients(services, patients_file(tmp_path / "patients.ndjson"), onboard=True)
        poison(monkeypatch, services, sealing={docs[2].unique_id}, storing={docs[7].unique_id, docs[8].unique_id})

        _, report = migrate(runtime, media, workers=0, batch=4)

        rejected = {d["uniqueId"]: d["reason"] for d in report["documents"] if d["outcome"] == "rejected"}
        assert rejected == {
            docs[2].unique_id: "the record could not store it: ValueError: sealing failed on purpose",
            docs[7].unique_id: "the record could not store it: TypeError: storing failed on purpose",
            docs[8].unique_id: "the record could not store it: TypeError: storing failed on purpose"}
        assert report["totals"]["migrated"] == 8 and report["totals"]["source"] == 11
        with runtime.engine.connect() as connection:
            created = connection.execute(select(func.count()).select_from(audit_record).where(
                audit_record.c.subtype == "ATC_DOC_CREATE")).scalar_one()
        assert created == 8
        assert verify_ledger(engine=runtime.engine, public_keys=services.auditor.ledger.public_keys).ok


@pytest.mark.postgres
def test_a_value_the_database_refuses_rejects_its_document_alone(tmp_path):
    """A uniqueId longer than the registry's column: PostgreSQL refuses the row (SQLite would not)."""
    docs = [Doc(1), Doc(2, unique_id="urn:oid:2.25." + "7" * 300), Doc(3)]
    media = [write_directory(tmp_path / "media-a", package_members(docs))]
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        _, report = migrate(gateway.runtime, media, workers=0, batch=8)

        assert [d["outcome"] for d in report["documents"]] == ["migrated", "rejected", "migrated"]


def _cli(data_dir: Path, database_url: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false",
           "EPR_DATABASE_URL": database_url}
    return subprocess.run([sys.executable, "-c", "from gateway.cli import app; app()", *args], env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.postgres
def test_the_database_going_away_stops_the_run_and_the_same_command_continues_it(tmp_path):
    url = fresh_postgres_url()
    database = create_engine(url).url.database
    docs = [Doc(n) for n in range(1, 41)]
    media = write_directory(tmp_path / "media-a", package_members(docs))
    admin = create_engine(create_engine(url).url.set(database="postgres"), isolation_level="AUTOCOMMIT")

    with running_gateway(tmp_path, url) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)
        data_dir = gateway.data_dir
    journal_count = create_engine(url)
    hook = tmp_path / "stop_after_first_batch.py"  # the database goes away once the first batch committed
    hook.write_text(
        "import gateway.migration.job as job\n"
        "from sqlalchemy import create_engine, text\n"
        "original = job.MigrationJob._committed\n"
        "def committed(self, pending, decided):\n"
        "    original(self, pending, decided)\n"
        f"    admin = create_engine({str(admin.url.render_as_string(hide_password=False))!r}, "
        "isolation_level='AUTOCOMMIT')\n"
        "    with admin.connect() as c:\n"
        f"        c.execute(text('ALTER DATABASE \"{database}\" ALLOW_CONNECTIONS false'))\n"
        f"        c.execute(text(\"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{database}'\"))\n"
        "job.MigrationJob._committed = committed\n")
    try:
        env_hook = f"import sys; sys.path.insert(0, {str(tmp_path)!r}); import stop_after_first_batch; " \
                   "from gateway.cli import app; app()"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false",
               "EPR_DATABASE_URL": url}
        stopped = subprocess.run([sys.executable, "-c", env_hook, "migrate", str(media), "--as-gln", HCP_GLN,
                                  "--batch", "8", "--workers", "1", "--no-progress"],
                                 env=env, capture_output=True, text=True, timeout=300)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))

    assert stopped.returncode == 1, stopped.stderr
    last = stopped.stderr.strip().splitlines()[-1]
    assert "database" in last and "run the same command again" in last and "Traceback" not in stopped.stderr
    with journal_count.connect() as connection:
        journaled = connection.execute(select(func.count()).select_from(migration_journal)).scalar_one()
    assert journaled == 8  # the first batch, committed with its documents; nothing of the second

    report_file = tmp_path / "report.json"
    resumed = _cli(data_dir, url, "migrate", str(media), "--as-gln", HCP_GLN, "--batch", "8", "--report",
                   str(report_file), "--no-progress")

    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(report_file.read_text())
    assert report["totals"]["migrated"] == 40 and report["totals"]["source"] == 40
    journal_count.dispose()
    admin.dispose()


def test_a_held_document_that_cannot_be_mapped_again_stays_held_and_a_later_retry_takes_it(tmp_path, monkeypatch):
    """`migrate retry` meeting an error nobody foresaw in one held document keeps that one held (its
    sealed copy too) and retries the others; once the cause is gone, the next retry migrates it."""
    import gateway.migration.reading as reading

    docs = [Doc(1), Doc(2)]
    media = [write_directory(tmp_path / "media-a", package_members(docs))]
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        runtime, services = gateway.runtime, gateway.services
        migrate(runtime, media, workers=0)  # the patient is not fed yet: both held (unknown-patient)
        feed_patients(services, patients_file(tmp_path / "patients.ndjson"), onboard=True)
        journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
        map_document = reading.map_document

        def failing(document, *args):
            if document.id == docs[0].entry_uuid:
                raise KeyError("a mapping bug")
            return map_document(document, *args)

        def retry() -> MigrationJob:
            job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                               journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN))
            job.retry()
            return job

        monkeypatch.setattr(reading, "map_document", failing)
        first = retry()
        held = journal.held_summary()
        monkeypatch.setattr(reading, "map_document", map_document)
        second = retry()

        assert first.counts.outcomes == {"held": 1, "migrated": 1}
        assert held == [("media-a/IHE_XDM/SUBSET01/DOC00001.PDF", "error",
                         "could not be mapped again: KeyError: 'a mapping bug'")]
        assert second.counts.outcomes == {"migrated": 1} and journal.held_summary() == []

