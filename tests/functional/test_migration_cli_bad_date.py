"""`epr-gateway migrate --report` as an operator runs it, on a generated export where one document of one
package has a creationTime of month 13 (issue 22 item 3, on the command line): the run ends as documented
(exit 0: one bad document is one outcome, not the run's end), the report file is written, that document
is rejected with its slot, its value and the reason, and every other document of its package (and of
the export) is stored in the record."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from conftest import HCP_GLN, make_settings, sqlite_url
from gateway.first_start import prepare
from gateway.wiring import build_runtime

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "IHE_XDM/SUBSET01"
BAD = "DOC00002.PDF"


def cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"),
           "EPR_DATA_DIR": str(tmp_path / "data"), "EPR_DEMO_DATA": "false"}
    return subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)


def month_13(metadata: Path, uri: str) -> str:
    """Give the document of `uri` a creationTime of month 13 in its package's METADATA.XML; returns it."""
    text = metadata.read_text(encoding="utf-8")
    objects = re.split(r"(?=<rim:ExtrinsicObject\b)", text)
    [index] = [i for i, part in enumerate(objects) if f"<rim:Value>{uri}</rim:Value>" in part]
    slot = re.compile(r'(name="creationTime"><rim:ValueList><rim:Value>)(\d{4})\d\d(\d+)(</rim:Value>)')
    found = slot.search(objects[index])
    value = f"{found[2]}13{found[3]}"
    objects[index] = slot.sub(lambda m: f"{m[1]}{value}{m[4]}", objects[index], count=1)
    metadata.write_text("".join(objects), encoding="utf-8")
    return value


def test_a_creation_time_of_month_13_rejects_that_document_alone_and_the_report_says_why(tmp_path):
    export = tmp_path / "export"
    generated = cli(tmp_path, "infomed", "generate", "--out", str(export), "--documents", "8", "--patients", "2")
    assert generated.returncode == 0, generated.stderr
    manifest = json.loads((export / "manifest.json").read_text())["documents"]
    [media] = sorted(export.glob("media-*"))
    bad_source = f"{media.name}/{PACKAGE}/{BAD}"
    siblings = {s for s in manifest if s.startswith(f"{media.name}/{PACKAGE}/") and s != bad_source}
    assert siblings and all(manifest[s]["outcome"] == "migrated" for s in [bad_source, *siblings])
    value = month_13(media / PACKAGE / "METADATA.XML", BAD)
    assert cli(tmp_path, "infomed", "feed", str(export / "patients.ndjson")).returncode == 0
    report_file = tmp_path / "report.json"

    done = cli(tmp_path, "migrate", str(media), "--as-gln", HCP_GLN, "--report", str(report_file), "--no-progress")

    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    report = json.loads(report_file.read_text(encoding="utf-8"))
    documents = {d["source"]: d for d in report["documents"]}
    assert set(documents) == set(manifest)  # every source document once
    rejected = documents[bad_source]
    assert (rejected["outcome"], rejected["reasonCode"]) == ("rejected", "invalid")
    assert "creationTime" in rejected["reason"] and value in rejected["reason"]
    assert "month 13" in rejected["reason"]
    assert {s: documents[s]["outcome"] for s in manifest if s != bad_source} == {
        s: expected["outcome"] for s, expected in manifest.items() if s != bad_source}
    assert report["totals"]["rejected"] == 1 and report["totals"]["source"] == len(manifest)
    assert done.stdout.splitlines()[0].startswith(f"{len(manifest)} source documents: ")

    runtime = build_runtime(prepare(make_settings(tmp_path / "data", sqlite_url(tmp_path))).settings)
    try:
        documents_store = runtime.services.exchange.documents
        stored = {s: documents_store.entry_for_unique_id(manifest[s]["uniqueId"]) for s in siblings}
        assert all(entry is not None and entry.status == "current" for entry in stored.values()), stored
        assert {documents[s]["uniqueId"] for s in siblings} == {e.unique_id for e in stored.values()}
        assert documents_store.entry_for_unique_id(manifest[bad_source]["uniqueId"]) is None
    finally:
        runtime.close()
