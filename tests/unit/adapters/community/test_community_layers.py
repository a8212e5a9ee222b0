"""The community adapter knows nothing of the gateway, the outbox or HTTP faces (design.md, "The next
floor"): read from the source, so a new module is held to it as well."""

from __future__ import annotations

from pathlib import Path

import pytest

from unit.test_layers import imported_modules

PACKAGE = Path(__file__).resolve().parents[4] / "adapters" / "community"
FORBIDDEN = ("gateway", "fastapi", "starlette", "sqlalchemy", "adapters.cara.store", "adapters.infomed", "consent")


@pytest.mark.parametrize("module", sorted(PACKAGE.glob("*.py")), ids=lambda p: p.name)
def test_the_adapter_imports_no_face_no_store_and_no_outbox(module):
    found = sorted(m for m in imported_modules(module) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN))
    assert found == [], f"{module.name} imports {found}"


def test_the_package_is_where_the_test_looks():
    assert (PACKAGE / "source.py").is_file()
