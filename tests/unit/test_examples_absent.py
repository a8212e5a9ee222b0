"""The README's rule for the official examples, checked on the tests themselves: in a lone clone (no
`../shared`), every test module that reads the examples passes or skips with one line; where they are
expected (CI), each of those tests fails with that one line, never with a traceback."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parents[2]
READS_EXAMPLES = re.compile(r"\b(FIXTURES|require_examples|example_files)\b")
NOT_READERS = {"conftest.py", "official_examples.py", Path(__file__).name}
ONE_LINE = "official examples not found"


def modules_reading_examples() -> list[str]:
    return sorted(str(path.relative_to(PROJECT)) for path in (PROJECT / "tests").rglob("test_*.py")
                  if path.name not in NOT_READERS and READS_EXAMPLES.search(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="module")
def lone_clone(tmp_path_factory) -> Path:
    """The project's code and tests copied where no `../shared` lies beside them."""
    clone = tmp_path_factory.mktemp("lone") / "gateway"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("adapters", "audit", "consent", "gateway", "tests"):
        shutil.copytree(PROJECT / name, clone / name, ignore=ignore)
    shutil.copy(PROJECT / "pyproject.toml", clone / "pyproject.toml")
    assert not (clone.parent / "shared").exists()
    return clone


def run_pytest(clone: Path, **env) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if k not in ("CI", "EPR_FIXTURES")} | env
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rsf", "-p", "no:cacheprovider", "-m",
                           "not postgres and not browser", *modules_reading_examples()],
                          cwd=clone, env=environment, capture_output=True, text=True, timeout=600)


def test_the_modules_reading_the_examples_are_found():
    assert {"tests/conformance/test_hl7v2_fixtures.py", "tests/conformance/test_ch_epr_mhd1.py",
            "tests/unit/adapters/infomed/test_hl7v2_tokenizer_slicing.py"} <= set(modules_reading_examples())


def test_a_lone_clone_skips_them_with_one_line_each(lone_clone):
    run = run_pytest(lone_clone)
    assert run.returncode == 0, run.stdout[-3000:]
    skips = [line for line in run.stdout.splitlines() if line.startswith("SKIPPED")]
    assert skips and all(ONE_LINE in line for line in skips), skips
    assert "got empty parameter set" not in run.stdout and "FileNotFoundError" not in run.stdout


def test_where_the_examples_are_expected_their_absence_fails_in_one_line(lone_clone):
    run = run_pytest(lone_clone, CI="true")
    failures = [line for line in run.stdout.splitlines() if line.startswith("FAILED")]
    assert run.returncode == 1 and failures, run.stdout[-3000:]
    assert all(ONE_LINE in line for line in failures), failures
    assert "FileNotFoundError" not in run.stdout and "Traceback" not in run.stdout
