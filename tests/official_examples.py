"""Where the tests find the official examples (CH EPR FHIR, ADR/PPQ, HL7 v2), and what their absence means.

A newcomer's clone has no `../shared`: the tests that read the examples skip, with one line that says
where to put them. Where the examples are expected (`CI` set, or `EPR_FIXTURES` pointing somewhere),
their absence is a failure: CI keeps running them.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

FIXTURES = Path(os.environ.get("EPR_FIXTURES", Path(__file__).resolve().parents[2] / "shared" / "fixtures"))


def examples_expected() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("EPR_FIXTURES"))


def require_examples(path: Path, names: tuple[str, ...] = ()) -> Path:
    """`path` (a folder, or the folder holding `names`), else skip — or fail where they are expected."""
    missing = [name for name in names if not (path / name).is_file()] if path.is_dir() else [str(path)]
    if not missing:
        return path
    message = (f"official examples not found ({', '.join(missing[:3])}{', …' if len(missing) > 3 else ''} in "
               f"{path}): put the shared fixtures at {FIXTURES} or set EPR_FIXTURES to their folder")
    if examples_expected():
        pytest.fail(message, pytrace=False)
    pytest.skip(message)


def example_files(folder: str, pattern: str) -> list:
    """The examples of `folder` matching `pattern`, for `parametrize` at collection time. Absent, one
    parameter stands for them all and skips (or fails) with the one line of `require_examples` when run,
    instead of pytest's "got empty parameter set"."""
    found = sorted((FIXTURES / folder).glob(pattern))
    if found:
        return [pytest.param(path, id=path.name) for path in found]
    return [pytest.param(FIXTURES / folder / pattern, id="examples-absent")]


def is_example(path: object) -> bool:
    """Whether `path` (a FileNotFoundError's filename) lies under the examples' folder."""
    try:
        Path(str(path)).resolve().relative_to(FIXTURES.resolve())
    except (TypeError, ValueError, OSError):
        return False
    return True
