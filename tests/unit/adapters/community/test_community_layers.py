"""The community adapter knows nothing of the gateway, the outbox or HTTP faces (design.md, "The next
floor"): read from the source, so a new module is held to it as well."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[4] / "adapters" / "community"
FORBIDDEN = ("gateway", "fastapi", "starlette", "sqlalchemy", "adapters.cara.store", "adapters.infomed", "consent")


def imported_modules(path: Path) -> set[str]:
    """Every module a file names in an import statement, wherever the statement is (relative ones resolved
    within the package)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            found.add(f"adapters.community.{node.module or ''}".rstrip(".") if node.level else node.module or "")
    return found


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_adapter_imports_no_face_no_store_and_no_outbox(module):
    found = sorted(m for m in imported_modules(module) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert found == [], f"{module.name} imports {found}"


def test_the_check_sees_a_planted_import(tmp_path):
    planted = tmp_path / "planted.py"
    planted.write_text("def f():\n    from gateway.exchanges.documents import DocumentExchange\n")
    assert "gateway.exchanges.documents" in imported_modules(planted)


def test_the_package_is_where_the_test_looks():
    assert (PACKAGE / "source.py").is_file()
