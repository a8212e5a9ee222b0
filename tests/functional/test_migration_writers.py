"""`migrate --workers N` into PostgreSQL: N writer processes, each reading and storing its share through the
same use-case, one journal and one report (issue 26 item 2). Compared with one writer on the same export
(quirks, a document of month 13): the same report, the same record, a ledger that verifies; a writer
killed with SIGKILL stops the run with a clear error, and the same command then ends it as if nothing
had happened."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.infomed.generate.export import generate
from adapters.infomed.generate.metadata import association
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import patient_key
from conftest import HCP_GLN, fresh_postgres_url, running_gateway
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.migration.report import build_report
from gateway.migration.schema import migration_journal
from gateway.migration.reading import Share
from gateway.migration.writers import writer_processes
from test_migration import process_group_ended, record_state, without_case_ids

pytestmark = pytest.mark.postgres
ROOT = Path(__file__).resolve().parents[2]
BAD_PACKAGE = "IHE_XDM/SUBSET02"


def with_month_13(zip_path: Path, package: str) -> str:
    """The first document of `package` in `zip_path` given a creationTime of month 13; its source name."""
    with zipfile.ZipFile(zip_path) as source:
        members = [(info, source.read(info)) for info in source.infolist()]
    rewritten, uri = io.BytesIO(), None
    with zipfile.ZipFile(rewritten, "w", zipfile.ZIP_DEFLATED) as target:
        for info, data in members:
            if info.filename == f"{package}/METADATA.XML":
                text = data.decode("utf-8")
                uri = re.search(r'name="URI"><rim:ValueList><rim:Value>([^<]+)<', text)[1]
                data = re.sub(r'(name="creationTime"><rim:ValueList><rim:Value>\d{4})\d\d', r"\g<1>13", text,
                              count=1).encode("utf-8")
            target.writestr(info, data)
    zip_path.write_bytes(rewritten.getvalue())
    return f"{zip_path.name}/{package}/{uri}"


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("infomed") / "export"
    generate(out=out, documents=160, patients=24, seed=11, as_zip=True, quirks=0.25, subsets_per_media=12)
    return out, with_month_13(sorted(out.glob("media-*.zip"))[0], BAD_PACKAGE)


def sources(export: Path) -> list[str]:
    return [str(p) for p in sorted(export.glob("media-*"))]


def job_on(runtime, journal: Journal, **options) -> MigrationJob:
    exchange = runtime.services.exchange
    return MigrationJob(exchange=exchange, imports=ImportExchange(exchange=exchange), journal=journal,
                        tables=CodeTables.load([]), principal=migration_principal(HCP_GLN), batch=8, workers=0,
                        **options)


def migrated_by_one_writer(tmp_path: Path, folder: Path) -> tuple[list[dict], dict]:
    """The reference: `folder` migrated by one writer, in this process (its report's documents and what
    the record holds)."""
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        runtime = gateway.runtime
        feed_patients(gateway.services, folder / "patients.ndjson", onboard=True)
        journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
        job = job_on(runtime, journal)
        job.run([Path(s) for s in sources(folder)])
        report = build_report(journal.rows_for(Path(s).name for s in sources(folder)).values(),
                              code_tables=job.tables.version)
        return without_case_ids(report["documents"]), record_state(runtime)


@pytest.fixture(scope="module")
def one_writer(tmp_path_factory, export) -> tuple[list[dict], dict]:
    return migrated_by_one_writer(tmp_path_factory.mktemp("one-writer"), export[0])


def cli(gateway, *args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EPR_DATA_DIR": str(gateway.data_dir), "EPR_DEMO_DATA": "false",
           "EPR_DATABASE_URL": gateway.runtime.settings.database_url}
    return subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def migrated_by_writers(gateway, folder: Path, *, writers: int, batch: int) -> tuple[str, list[dict]]:
    """`folder` migrated by `epr-gateway migrate --workers N` (its patients fed first): what it printed and
    its report's documents."""
    feed_patients(gateway.services, folder / "patients.ndjson", onboard=True)
    report_file = gateway.data_dir.parent / "report.json"
    run = cli(gateway, "migrate", *sources(folder), "--as-gln", HCP_GLN, "--workers", str(writers), "--batch",
              str(batch), "--report", str(report_file), "--no-progress")
    out, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    return out, json.loads(report_file.read_text())["documents"]


def journaled(gateway) -> int:
    with gateway.runtime.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(migration_journal)).scalar_one()


def writer_children(pid: int) -> list[int]:
    """The command's writer processes (spawned: `spawn_main` in their command line, not the resource tracker)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [int(c) for c in children
            if b"spawn_main" in Path(f"/proc/{c}/cmdline").read_bytes()
            and b"resource_tracker" not in Path(f"/proc/{c}/cmdline").read_bytes()]


def test_the_store_decides_how_many_processes_write():
    assert writer_processes(dialect="postgresql", workers=3) == 3
    assert writer_processes(dialect="postgresql", workers=1) == 1
    assert writer_processes(dialect="postgresql", workers=0) == 1
    assert writer_processes(dialect="sqlite", workers=4) == 1


def test_several_writers_store_exactly_what_one_writer_stores(tmp_path, export, one_writer):
    folder, bad_source = export
    expected_documents, expected_state = one_writer
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        out, documents = migrated_by_writers(gateway, folder, writers=3, batch=8)

        assert without_case_ids(documents) == expected_documents
        assert record_state(gateway.runtime) == expected_state
        [bad] = [d for d in documents if d["source"] == bad_source]
        assert bad["outcome"] == "rejected" and "creationTime" in bad["reason"] and "13" in bad["reason"]
        outcomes = {d["outcome"] for d in documents}
        assert {"migrated", "already_present", "superseded", "held", "rejected"} <= outcomes
        assert f"{len(documents)} source documents" in out
        verify = cli(gateway, "audit", "verify")
        assert verify.wait(timeout=120) == 0, verify.stderr.read()


def two_writers_under_way(gateway, folder):
    """`migrate --workers 2` started on the export, once 20 of its rows are journaled (or it ended)."""
    feed_patients(gateway.services, folder / "patients.ndjson", onboard=True)
    command = ("migrate", *sources(folder), "--as-gln", HCP_GLN, "--workers", "2", "--batch", "3", "--no-progress")
    process = cli(gateway, *command)
    deadline = time.monotonic() + 120
    while journaled(gateway) < 20 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.02)
    return command, process


def test_a_writer_killed_stops_the_run_and_the_same_command_ends_it_as_one_writer_would(tmp_path, export,
                                                                                         one_writer):
    folder, _ = export
    expected_documents, expected_state = one_writer
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        command, process = two_writers_under_way(gateway, folder)
        writers = writer_children(process.pid)
        assert len(writers) == 2
        os.kill(writers[0], signal.SIGKILL)
        out, err = process.communicate(timeout=120)

        assert process.returncode == 1, (out, err)
        assert "a writer process failed" in err and "killed by signal 9" in err
        assert "run the same command again" in err
        assert process_group_ended(process.pid)  # the other writer stopped too
        at_kill = journaled(gateway)
        assert 0 < at_kill < len(expected_documents)

        report_file = tmp_path / "report.json"
        resumed = cli(gateway, *command, "--report", str(report_file))
        out, err = resumed.communicate(timeout=300)

        assert resumed.returncode == 0, err
        assert "skipped" in out
        assert without_case_ids(json.loads(report_file.read_text())["documents"]) == expected_documents
        assert record_state(gateway.runtime) == expected_state
        verify = cli(gateway, "audit", "verify")
        assert verify.wait(timeout=120) == 0, verify.stderr.read()


def documents_in_order(folder: Path) -> list[tuple[Path, ebrim.RegistryObject, str]]:
    """(package, document, source) of every document of the export, in the run's order."""
    found = []
    for medium in sorted(folder.glob("media-*")):
        for metadata_file in sorted(medium.glob("IHE_XDM/*/METADATA.XML")):
            package = metadata_file.parent
            for document in ebrim.parse_metadata(metadata_file.read_bytes()).documents:
                found.append((package, document, f"{medium.name}/IHE_XDM/{package.name}/{document.slot('URI')}"))
    return found


def names_as_addendum(package: Path, document: ebrim.RegistryObject, target: ebrim.RegistryObject) -> None:
    metadata = package / "METADATA.XML"
    text = metadata.read_text(encoding="utf-8")
    tail = text.rindex("</rim:RegistryObjectList>")
    metadata.write_text(text[:tail] + association(900, ebrim.APND, document.id, target.id) + text[tail:],
                        encoding="utf-8")


@dataclass
class Crossed:
    folder: Path
    backward: str  # the source of a document naming an earlier document of another writer's share
    forward: str  # the source of one naming a later one (the run's last document)
    writer_of_last: int
    expected_documents: list[dict]
    expected_state: dict


@pytest.fixture(scope="module")
def crossed(tmp_path_factory) -> Crossed:
    """An export where a document names another patient's document (another writer's share) as its
    target: named earlier in the run, one writer finds it and the record refuses it (not this patient's);
    named later, one writer holds it as not (yet) in the record. With one writer's report and record."""
    tmp_path = tmp_path_factory.mktemp("crossed")
    folder = tmp_path / "export"
    generate(out=folder, documents=60, patients=12, seed=5, quirks=0.0, subsets_per_media=6)
    documents = documents_in_order(folder)
    writer_of = {source: next(n for n in range(2) if Share(n, 2).takes(patient_key(document)))
                 for _, document, source in documents}
    first, *_, last = documents
    backward = next(d for d in documents[len(documents) // 2:] if writer_of[d[2]] != writer_of[first[2]])
    forward = next(d for d in documents[1:len(documents) // 2] if writer_of[d[2]] != writer_of[last[2]])
    names_as_addendum(backward[0], backward[1], first[1])
    names_as_addendum(forward[0], forward[1], last[1])
    expected_documents, expected_state = migrated_by_one_writer(tmp_path / "one", folder)
    expected = {d["source"]: d for d in expected_documents}
    assert (expected[backward[2]]["outcome"], expected[forward[2]]["outcome"]) == ("held", "held")
    assert "not a document of this patient" in expected[backward[2]]["reason"]
    assert "not (yet) in the record" in expected[forward[2]]["reason"]
    return Crossed(folder, backward[2], forward[2], writer_of[last[2]], expected_documents, expected_state)


def test_a_relation_across_two_writers_shares_is_decided_as_one_writer_decides_it(tmp_path, crossed):
    """Several writers hand such documents to the parent, which decides them at the end seeing only the
    targets that came before each."""
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        _, documents = migrated_by_writers(gateway, crossed.folder, writers=2, batch=4)

        assert without_case_ids(documents) == crossed.expected_documents
        assert record_state(gateway.runtime) == crossed.expected_state


def test_a_writer_that_starts_after_another_has_finished_takes_nothing_of_this_run_for_earlier(tmp_path, crossed):
    """The writers one after the other, in this process, the one holding the run's last document first:
    the second must not take what the first stored for an earlier run's (it would find the forward
    target)."""
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        runtime = gateway.runtime
        feed_patients(gateway.services, crossed.folder / "patients.ndjson", onboard=True)
        journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
        earlier = journal.stored_targets()
        paths = [Path(s) for s in sources(crossed.folder)]
        deferred, targets = [], {}
        for number in (crossed.writer_of_last, 1 - crossed.writer_of_last):
            writer = job_on(runtime, journal, share=Share(number, 2), defer=deferred.append)
            writer.run(paths, earlier_targets=earlier)
            targets.update(writer.targets_of_this_run())
        job_on(runtime, journal).run_deferred(deferred, targets, earlier_targets=earlier)

        report = build_report(journal.rows_for(p.name for p in paths).values(), code_tables=CodeTables.load([]).version)
        assert without_case_ids(report["documents"]) == crossed.expected_documents
        assert {s for s in (crossed.backward, crossed.forward)} <= {p.row.source for p in deferred}
        assert record_state(runtime) == crossed.expected_state


def test_the_command_killed_its_writers_end_too_and_the_same_command_ends_the_run(tmp_path, export, one_writer):
    folder, _ = export
    expected_documents, expected_state = one_writer
    with running_gateway(tmp_path, fresh_postgres_url()) as gateway:
        command, process = two_writers_under_way(gateway, folder)
        assert len(writer_children(process.pid)) == 2
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

        assert process_group_ended(process.pid)  # each writer saw its parent go at its next batch, and ended
        assert 0 < journaled(gateway) < len(expected_documents)
        report_file = tmp_path / "report.json"
        resumed = cli(gateway, *command, "--report", str(report_file))
        out, err = resumed.communicate(timeout=300)
        assert resumed.returncode == 0, err
        assert without_case_ids(json.loads(report_file.read_text())["documents"]) == expected_documents
        assert record_state(gateway.runtime) == expected_state
