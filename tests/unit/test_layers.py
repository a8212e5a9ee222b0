"""The house's floors (design.md, "Growing the house"): the faces (HTTP, MLLP, the patient's page, the
migration, the command line) reach the record through the use-case layer only, and the use-case layer
knows no face. Read from the source (imports, by `ast`), so a new module is held to it as well."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"
FACES = ("http", "mllp", "portal", "migration")
STORE = "adapters.cara.store"
# Where a face touches the store on purpose, and why (anything else fails the test).
STORE_ALLOWED = {
    "http/routes/meta.py": "the readiness probe asks whether the database answers (reads no record)",
    "migration/schema.py": "the migration journal's own tables join the store's schema (Alembic)",
    "cli.py": "operator commands act on the store itself: schema upgrade, key rotation, ledger verify",
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def face_modules() -> list[Path]:
    return sorted([p for face in FACES for p in (GATEWAY / face).rglob("*.py")] + [GATEWAY / "cli.py"])


@pytest.mark.parametrize("module", face_modules(), ids=lambda p: str(p.relative_to(GATEWAY)))
def test_a_face_reaches_the_record_through_the_use_cases_only(module):
    relative = str(module.relative_to(GATEWAY))
    store_imports = sorted(m for m in imported_modules(module) if m == STORE or m.startswith(STORE + "."))
    if relative in STORE_ALLOWED:
        return
    assert store_imports == [], f"{relative} imports the store directly: {store_imports}"


@pytest.mark.parametrize("module", sorted((GATEWAY / "exchanges").rglob("*.py")),
                         ids=lambda p: str(p.relative_to(GATEWAY)))
def test_the_use_case_layer_knows_no_face(module):
    faces = sorted(m for m in imported_modules(module)
                   if any(m == f"gateway.{face}" or m.startswith(f"gateway.{face}.") for face in (*FACES, "cli")))
    assert faces == [], f"{module.relative_to(GATEWAY)} imports a face: {faces}"


def test_the_allowed_exceptions_still_exist_and_still_need_their_exception():
    """An exception that is no longer needed is taken off the list (it would hide a new violation)."""
    for relative in STORE_ALLOWED:
        imports = imported_modules(GATEWAY / relative)
        assert any(m == STORE or m.startswith(STORE + ".") for m in imports), relative
