"""ARCHITECTURE.md stays the map of the tree: every product module is named in it, and it stays short
enough to be read (the chapters in full live in docs/design-notes.md)."""

from __future__ import annotations

import re

from source_tree import ROOT, product_modules

MAP = ROOT / "ARCHITECTURE.md"
MAX_LINES = 300


def unnamed(text: str, modules) -> list[str]:
    """The modules whose file name the map does not mention (Alembic's migrations aside)."""
    return sorted(str(path.relative_to(ROOT)) for path in modules
                  if path.name != "__init__.py" and "/migrations/" not in str(path)
                  and not re.search(rf"(?<![\w.]){re.escape(path.stem)}(\.py|/|\b)", text))


def test_the_map_names_every_module():
    assert unnamed(MAP.read_text(), product_modules().values()) == []


def test_the_map_is_short():
    assert len(MAP.read_text().splitlines()) < MAX_LINES


def test_the_check_finds_a_module_the_map_does_not_name():
    module = ROOT / "gateway" / "exchanges" / "outbox.py"  # not created: only its name is checked
    assert unnamed("exchanges/ documents.py, policies.py", [module]) == ["gateway/exchanges/outbox.py"]
