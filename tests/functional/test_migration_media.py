"""Every source given to `migrate` is accounted for, nothing outside the media is followed, and the
refusals that guard the gateway are in the audit ledger (issue 22 items 5, 8 and 13).

Sources as they arrive: ZIPs made on Windows (backslashes), the media inside an inner ZIP or a
folder, empty or not ZIPs at all, two members of one name, named pipes, symbolic links to files and
directories outside the media, climbing names, ZIP members stored as links. Each gets its documents
or the reason none could be read; none is silently skipped, none hangs the run."""

from __future__ import annotations

import io
import json
import os
import signal
import stat
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import select

from adapters.infomed.generate.metadata import ENTITY_BOMB
from adapters.infomed.xdm.codes import CodeTables
from audit.ledger import verify_ledger
from audit.schema import audit_record
from conftest import HCP_GLN, running_gateway, sqlite_url
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.migration.report import build_report
from xdm_packages import Doc, package_members, patients_file, write_directory, write_zip

ROOT = Path(__file__).resolve().parents[2]


def migrate(runtime, sources, *, dry_run=False, workers=2) -> dict:
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN),
                       batch=8, workers=workers, dry_run=dry_run)
    job.run(sources)
    rows = job.dry_rows if dry_run else journal.rows_for(s.name for s in sources).values()
    return build_report(rows, code_tables=job.tables.version, dry_run=dry_run)


def table(report: dict) -> dict[str, tuple[str, str | None]]:
    return {d["source"]: (d["outcome"], d.get("reasonCode")) for d in report["documents"]}


def reason(report: dict, source: str) -> str:
    return next(d["reason"] or "" for d in report["documents"] if d["source"] == source)


def zip_link(path: Path, members: dict[str, bytes], links: dict[str, str]) -> Path:
    """A ZIP (made on Unix) with `links` stored as symbolic-link members (name → target)."""
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name, target in links.items():
            info = zipfile.ZipInfo(name)
            info.create_system = 3
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


# -- every source accounted (22.5) ----------------------------------------------------------------------
def odd_sources(root: Path) -> tuple[list[Path], dict[str, tuple[str, str | None, str]]]:
    """Sources as they arrive, and per report row the expected (outcome, reason code, words of the reason)."""
    root.mkdir(parents=True)
    windows = [(name.replace("/", "\\"), data) for name, data in package_members([Doc(1), Doc(2)]).items()]
    inner = io.BytesIO()
    with zipfile.ZipFile(inner, "w") as archive:
        for name, data in package_members([Doc(3)]).items():
            archive.writestr(name, data)
    (root / "empty-dir").mkdir()
    (root / "no-subsets" / "IHE_XDM").mkdir(parents=True)
    fifo = root / "pipe.zip"
    os.mkfifo(fifo)
    sources = [
        write_zip(root / "windows.zip", windows),
        write_zip(root / "nested.zip", {"README.TXT": b"the export", "export.zip": inner.getvalue()}),
        write_zip(root / "folder.zip", {f"export/{k}": v for k, v in package_members([Doc(4)]).items()}),
        write_zip(root / "empty.zip", {}),
        root / "not-a-zip.zip",
        root / "empty-dir",
        root / "no-subsets",
        write_directory(root / "no-documents", {"IHE_XDM/SUBSET01/METADATA.XML": package_members([])[
            "IHE_XDM/SUBSET01/METADATA.XML"]}),
        fifo,
    ]
    (root / "not-a-zip.zip").write_bytes(b"%PDF-1.4 a PDF renamed .zip\n" * 20)
    expected = {
        "windows.zip/IHE_XDM/SUBSET01/DOC00001.PDF": ("migrated", None, ""),
        "windows.zip/IHE_XDM/SUBSET01/DOC00002.PDF": ("migrated", None, ""),
        "nested.zip": ("rejected", "media", "it holds another ZIP (export.zip): unpack it"),
        "folder.zip": ("rejected", "media", "inside the folder export/"),
        "empty.zip": ("rejected", "media", "the ZIP holds no file"),
        "not-a-zip.zip": ("rejected", "media", "not a ZIP file"),
        "empty-dir": ("rejected", "media", "no IHE_XDM directory"),
        "no-subsets": ("rejected", "media", "holds no submission set"),
        "no-documents/IHE_XDM/SUBSET01/METADATA.XML": ("rejected", "metadata", "lists no document"),
        "pipe.zip": ("rejected", "media", "a named pipe, not a directory or a ZIP file"),
    }
    return sources, expected


def test_every_source_given_appears_in_the_report_with_its_documents_or_why_none(tmp_path, database_url):
    sources, expected = odd_sources(tmp_path / "export")
    with running_gateway(tmp_path, database_url) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        report = migrate(gateway.runtime, sources)

        assert table(report) == {source: (outcome, code) for source, (outcome, code, _) in expected.items()}
        assert {s: words for s, (_, _, words) in expected.items() if words not in reason(report, s)} == {}
        assert {d["source"].split("/", 1)[0] for d in report["documents"]} == {s.name for s in sources}


def test_two_members_of_one_name_make_their_package_ambiguous(tmp_path):
    first, second = package_members([Doc(1)]), package_members([Doc(2)])
    other = package_members([Doc(3)], subset="SUBSET02", set_n=2)
    twice_metadata = [*first.items(), ("IHE_XDM/SUBSET01/METADATA.XML", second["IHE_XDM/SUBSET01/METADATA.XML"]),
                      ("IHE_XDM/SUBSET01/DOC00002.PDF", Doc(2).content), *other.items()]
    twice_document = [*first.items(), ("IHE_XDM/SUBSET01/DOC00001.PDF", b"%PDF-1.4 another document\n")]
    slash_and_backslash = [*first.items(), ("IHE_XDM\\SUBSET01\\DOC00001.PDF", b"%PDF-1.4 the Windows copy\n")]
    sources = [write_zip(tmp_path / "metadata-twice.zip", twice_metadata),
               write_zip(tmp_path / "document-twice.zip", twice_document),
               write_zip(tmp_path / "both-separators.zip", slash_and_backslash)]
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        report = migrate(gateway.runtime, sources)

        assert table(report) == {
            "metadata-twice.zip/IHE_XDM/SUBSET01": ("rejected", "media"),
            "metadata-twice.zip/IHE_XDM/SUBSET02/DOC00003.PDF": ("migrated", None),
            "document-twice.zip/IHE_XDM/SUBSET01": ("rejected", "media"),
            "both-separators.zip/IHE_XDM/SUBSET01": ("rejected", "media")}
        assert "METADATA.XML" in reason(report, "metadata-twice.zip/IHE_XDM/SUBSET01")
        assert {reason(report, s) for s in ("document-twice.zip/IHE_XDM/SUBSET01",
                                            "both-separators.zip/IHE_XDM/SUBSET01")} == {
            "the ZIP holds two members of one name (DOC00001.PDF): the package is ambiguous, refused"}


def run_cli(data_dir: Path, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """The command as an operator runs it; on a timeout its whole process group (readers too) is killed."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false"}
    process = subprocess.Popen([sys.executable, "-c", "from gateway.cli import app; app()", *args], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def test_named_pipes_in_a_directory_media_are_refused_without_waiting(tmp_path):
    media = write_directory(tmp_path / "media-pipes", {
        **package_members([Doc(1), Doc(2), Doc(3)]),
        **package_members([Doc(4)], subset="SUBSET02", set_n=2)})
    for pipe in (media / "IHE_XDM/SUBSET01/DOC00002.PDF", media / "IHE_XDM/SUBSET02/METADATA.XML"):
        pipe.unlink()
        os.mkfifo(pipe)  # nobody ever writes: opening it for reading the usual way waits forever
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)
        data_dir = gateway.data_dir
    report_file = tmp_path / "report.json"

    done = run_cli(data_dir, "migrate", str(media), "--as-gln", HCP_GLN, "--report", str(report_file),
                   "--no-progress", timeout=120)

    assert done.returncode == 0, done.stderr
    report = json.loads(report_file.read_text())
    assert table(report) == {
        "media-pipes/IHE_XDM/SUBSET01/DOC00001.PDF": ("migrated", None),
        "media-pipes/IHE_XDM/SUBSET01/DOC00002.PDF": ("rejected", "file"),
        "media-pipes/IHE_XDM/SUBSET01/DOC00003.PDF": ("migrated", None),
        "media-pipes/IHE_XDM/SUBSET02/METADATA.XML": ("rejected", "media")}
    assert {reason(report, s) for s in ("media-pipes/IHE_XDM/SUBSET01/DOC00002.PDF",
                                        "media-pipes/IHE_XDM/SUBSET02/METADATA.XML")} == {
        "URI DOC00002.PDF is not a regular file (a named pipe): refused",
        "METADATA.XML is not a regular file (a named pipe): refused"}


# -- nothing outside the media followed (22.8) ------------------------------------------------------------
def linked_media(root: Path) -> tuple[list[Path], dict[str, tuple[str, str | None]]]:
    """Directory media with links out (METADATA.XML, a document, a folder of the URI, a subset, IHE_XDM
    itself), one link that stays inside (followed), and a ZIP with a climbing name and a link member."""
    outside = write_directory(root / "outside", {
        **package_members([Doc(10)]), "IHE_XDM/SUBSET01/secret.pdf": b"%PDF-1.4 not part of any media\n",
        "folder/DOC.PDF": b"%PDF-1.4 outside too\n"})
    subset2 = package_members([Doc(11), Doc(12), Doc(13, uri="folder/DOC.PDF")], subset="SUBSET02", set_n=2)
    del subset2["IHE_XDM/SUBSET02/folder/DOC.PDF"]  # its folder is a link out
    media = write_directory(root / "media-links", {
        "IHE_XDM/SUBSET01/DOC00010.PDF": Doc(10).content,  # METADATA.XML comes from outside (a link)
        **subset2, **package_members([Doc(14)], subset="SUBSET04", set_n=4)})
    (media / "IHE_XDM/SUBSET01/METADATA.XML").symlink_to(outside / "IHE_XDM/SUBSET01/METADATA.XML")
    (media / "IHE_XDM/SUBSET02/DOC00011.PDF").unlink()
    (media / "IHE_XDM/SUBSET02/DOC00011.PDF").symlink_to(outside / "IHE_XDM/SUBSET01/secret.pdf")
    (media / "IHE_XDM/SUBSET02/DOC00012.PDF").unlink()
    (media / "IHE_XDM/SUBSET02/DOC00012.PDF").symlink_to("../SUBSET04/DOC00012.PDF")  # stays inside
    (media / "IHE_XDM/SUBSET04/DOC00012.PDF").write_bytes(Doc(12).content)
    (media / "IHE_XDM/SUBSET02/folder").symlink_to(outside / "folder", target_is_directory=True)
    (media / "IHE_XDM/SUBSET03").symlink_to(outside / "IHE_XDM/SUBSET01", target_is_directory=True)
    whole = root / "media-whole"
    whole.mkdir()
    (whole / "IHE_XDM").symlink_to(outside / "IHE_XDM", target_is_directory=True)
    zipped = package_members([Doc(15), Doc(16)], subset="SUBSET01", set_n=5)
    del zipped["IHE_XDM/SUBSET01/DOC00016.PDF"]  # stored as a link to /etc/passwd instead
    archive = zip_link(root / "links.zip", {**zipped, "IHE_XDM/SUBSET01/../../../etc/cron.d/evil": b"* * * * *\n"},
                       links={"IHE_XDM/SUBSET01/DOC00016.PDF": "/etc/passwd"})
    expected = {
        "media-links/IHE_XDM/SUBSET01/METADATA.XML": ("rejected", "media"),
        "media-links/IHE_XDM/SUBSET02/DOC00011.PDF": ("rejected", "file"),
        "media-links/IHE_XDM/SUBSET02/DOC00012.PDF": ("migrated", None),
        "media-links/IHE_XDM/SUBSET02/folder/DOC.PDF": ("rejected", "file"),
        "media-links/IHE_XDM/SUBSET03": ("rejected", "media"),
        "media-links/IHE_XDM/SUBSET04/DOC00014.PDF": ("migrated", None),
        "media-whole/IHE_XDM": ("rejected", "media"),
        "links.zip/IHE_XDM/SUBSET01/../../../etc/cron.d/evil": ("rejected", "media"),
        "links.zip/IHE_XDM/SUBSET01/DOC00015.PDF": ("migrated", None),
        "links.zip/IHE_XDM/SUBSET01/DOC00016.PDF": ("rejected", "file"),
    }
    return [media, whole, archive], expected


def security_records(runtime) -> list[dict]:
    with runtime.engine.connect() as connection:
        return [json.loads(r) for r in connection.execute(select(audit_record.c.record_json).where(
            audit_record.c.event_type == "ITI-32").order_by(audit_record.c.seq)).scalars()]


def test_nothing_outside_the_media_is_followed_and_each_refusal_is_audited(tmp_path, database_url):
    sources, expected = linked_media(tmp_path / "export")
    with running_gateway(tmp_path, database_url) as gateway:
        runtime, services = gateway.runtime, gateway.services
        feed_patients(services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        report = migrate(runtime, sources)

        assert table(report) == expected
        refused = [d for d in report["documents"] if d["outcome"] == "rejected"]
        assert all("outside the media" in d["reason"] or "climbs out" in d["reason"]
                   or "symbolic link" in d["reason"] for d in refused), refused
        descriptions = {r["outcomeDesc"] for r in security_records(runtime)}
        assert descriptions == {
            "XDM media media-links: 4 part(s) refused for security reasons: link-out ×4 "
            "(first: media-links/IHE_XDM/SUBSET01/METADATA.XML)",
            "XDM media media-whole: 1 part(s) refused for security reasons: link-out ×1 "
            "(first: media-whole/IHE_XDM)",
            "XDM media links.zip: 2 part(s) refused for security reasons: climbing-name ×1 "
            "(first: links.zip/IHE_XDM/SUBSET01/../../../etc/cron.d/evil); link-member ×1 "
            "(first: links.zip/IHE_XDM/SUBSET01/DOC00016.PDF)"}
        assert verify_ledger(engine=runtime.engine, public_keys=services.auditor.ledger.public_keys).ok


# -- accountability (22.13) ------------------------------------------------------------------------------
def test_a_flood_of_refusals_is_one_record_per_media_with_the_count(tmp_path):
    """500 documents linked out of the media, an entity bomb and a climbing URI: one record per media;
    a dry run audits them too (the attempt was real); a rerun, which skips what is journaled, adds none."""
    outside = tmp_path / "outside.pdf"
    outside.write_bytes(b"%PDF-1.4 not yours\n")
    docs = [Doc(n) for n in range(100, 600)]
    flood = write_directory(tmp_path / "media-flood", package_members(docs))
    for doc in docs:
        (flood / "IHE_XDM/SUBSET01" / doc.file_name()).unlink()
        (flood / "IHE_XDM/SUBSET01" / doc.file_name()).symlink_to(outside)
    climbing = package_members([Doc(7, uri="../../x.pdf")], subset="SUBSET02")
    del climbing["IHE_XDM/SUBSET02/../../x.pdf"]  # the URI names nothing in the ZIP: it climbs
    other = write_zip(tmp_path / "other.zip", {"IHE_XDM/SUBSET01/METADATA.XML": ENTITY_BOMB, **climbing})
    with running_gateway(tmp_path, sqlite_url(tmp_path)) as gateway:
        runtime, services = gateway.runtime, gateway.services
        feed_patients(services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        migrate(runtime, [flood, other], dry_run=True)
        after_dry_run = len(security_records(runtime))
        report = migrate(runtime, [flood, other])
        migrate(runtime, [flood, other])

        assert report["totals"]["rejected"] == 502
        records = security_records(runtime)
        assert after_dry_run == 2 and len(records) == 4
        assert [r["outcomeDesc"] for r in records[2:]] == [
            "XDM media media-flood: 500 part(s) refused for security reasons: link-out ×500 "
            "(first: media-flood/IHE_XDM/SUBSET01/DOC00100.PDF)",
            "XDM media other.zip: 2 part(s) refused for security reasons: doctype ×1 "
            "(first: other.zip/IHE_XDM/SUBSET01/METADATA.XML); climbing-name ×1 "
            "(first: other.zip/IHE_XDM/SUBSET02/../../x.pdf)"]
        assert {r["outcome"] for r in records} == {"4"}
        assert {a["who"]["identifier"]["value"] for r in records for a in r["agent"]
                if a.get("requestor")} >= {"infomed-migration"}
