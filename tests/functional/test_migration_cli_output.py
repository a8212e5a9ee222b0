"""The operator's commands as an operator runs them (issue 27 items 3 and 6): `infomed generate` never
deletes a directory it did not write; the progress bar keeps its bar, count and time left at 80
columns and ends at what it counted; a rerun says what it did, not the earlier run's totals; `migrate
retry` says what it retried; no library warning reaches the terminal; `--workers` is processes."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import HCP_GLN

ROOT = Path(__file__).resolve().parents[2]


def cli(tmp_path: Path, *args: str, columns: int = 80) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"),
           "EPR_DATA_DIR": str(tmp_path / "data"), "EPR_DEMO_DATA": "false", "COLUMNS": str(columns)}
    done = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", *args], env=env,
                          capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "Warning" not in done.stderr and "Traceback" not in done.stderr, done.stderr
    return done


# -- infomed generate --out (27.3) -------------------------------------------------------------------------
def test_generate_refuses_a_directory_it_did_not_write_unless_forced(tmp_path):
    mine = tmp_path / "my-documents"
    mine.mkdir()
    (mine / "thesis.odt").write_bytes(b"years of work")
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")

    refused = cli(tmp_path, "infomed", "generate", "--out", str(mine), "--documents", "3", "--patients", "2")
    refused_file = cli(tmp_path, "infomed", "generate", "--out", str(a_file), "--documents", "3", "--patients", "2")

    assert (refused.returncode, refused_file.returncode) == (2, 2)
    assert refused.stderr.splitlines() == [
        f"epr-gateway infomed generate: Invalid value for --out: {mine} is not empty and was not written by "
        "`infomed generate` (no .infomed-generate): give a new or empty directory, or --force to delete what it "
        "holds and write there (see --help)"]
    assert "is not a directory" in refused_file.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["thesis.odt"] and a_file.read_text() == "keep me"

    forced = cli(tmp_path, "infomed", "generate", "--out", str(mine), "--documents", "3", "--patients", "2",
                 "--force")
    again = cli(tmp_path, "infomed", "generate", "--out", str(mine), "--documents", "4", "--patients", "2")
    empty = tmp_path / "empty"
    empty.mkdir()
    into_empty = cli(tmp_path, "infomed", "generate", "--out", str(empty), "--documents", "3", "--patients", "2")

    assert (forced.returncode, again.returncode, into_empty.returncode) == (0, 0, 0)
    assert not (mine / "thesis.odt").exists()
    assert json.loads((mine / "manifest.json").read_text())["documents"].__len__() == 4  # replaced, unasked
    assert (empty / ".infomed-generate").is_file() and (empty / "patients.ndjson").is_file()


# -- what the migration prints (27.6) ---------------------------------------------------------------------
@pytest.fixture(scope="module")
def operator(tmp_path_factory):
    """An export with quirks (an entity bomb, a truncated ZIP, held documents), fed, as the README shows."""
    home = tmp_path_factory.mktemp("operator")
    assert cli(home, "infomed", "generate", "--out", str(home / "export"), "--documents", "90", "--patients", "12",
               "--zip", "--quirks", "0.3").returncode == 0
    assert cli(home, "infomed", "feed", str(home / "export" / "patients.ndjson")).returncode == 0
    return home


def media(home: Path) -> list[str]:
    return sorted(str(p) for p in (home / "export").glob("media-*.zip"))


BAR = re.compile(r"^migrating ━+ +(?P<done>\d+)/(?P<total>\d+) (?P<left>\d+:\d\d:\d\d|-:--:--)$")


def test_the_progress_bar_keeps_bar_count_and_time_left_at_80_columns_and_ends_at_the_count(operator):
    report = operator / "report.json"
    run = cli(operator, "migrate", *media(operator), "--as-gln", HCP_GLN, "--report", str(report), "--progress",
              "--batch", "16")
    retry = cli(operator, "migrate", "retry", "--as-gln", HCP_GLN)
    rerun = cli(operator, "migrate", *media(operator), "--as-gln", HCP_GLN, "--no-progress")

    assert run.returncode == 0, run.stderr
    totals = json.loads(report.read_text())["totals"]
    bars = [BAR.match(line) for line in run.stderr.splitlines() if line.startswith("migrating")]
    assert bars and all(bars), run.stderr
    last = bars[-1]
    assert int(last["done"]) == int(last["total"]) == totals["source"]
    assert max(len(line) for line in run.stderr.splitlines()) <= 80
    assert any(line.strip().startswith(tuple("0123456789")) and "docs/s" in line and "migrated" in line
               for line in run.stderr.splitlines())
    # the first run's terminal summary is its own report
    assert run.stdout.splitlines()[0].startswith(f"{totals['source']} source documents: {totals['migrated']} migrated")

    # retry: what it retried (nothing changed, so everything still held), not the media's totals
    held = totals["held"]
    assert retry.returncode == 0, retry.stderr
    assert retry.stdout.splitlines()[0] == f"retried {held} held documents: {held} still held"
    assert "source documents" not in retry.stdout

    # a rerun: it did nothing; then where the media stand, said as such
    assert rerun.returncode == 0, rerun.stderr
    assert rerun.stdout.splitlines()[0] == (f"this run: 0 source documents processed; {totals['source']} "
                                            "skipped (journaled by an earlier run)")
    assert rerun.stdout.splitlines()[1].startswith(f"these media, this run and earlier ones: {totals['source']} "
                                                   "source documents: ")


def test_workers_are_processes_in_the_help_and_in_the_readme(tmp_path):
    helped = cli(tmp_path, "migrate", "--help", columns=200)
    readme = (ROOT / "README.md").read_text()

    assert "processes reading and mapping the media" in helped.stdout
    assert "on PostgreSQL writer processes" in helped.stdout
    assert "`--workers N` (processes reading and mapping" in readme and "threads reading" not in readme
