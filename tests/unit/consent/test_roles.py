"""One role table (`consent/roles.py`): no other product module writes its own list of roles."""

from __future__ import annotations

from consent.roles import (
    DELEGATING,
    EMERGENCY_USERS,
    IDENTITY_FEEDERS,
    IDENTITY_READERS,
    MERGERS,
    PATIENT_SIDE,
    PROFESSIONAL_AUTHORS,
    PROFESSIONALS,
    REVIEWERS,
    ROLES,
)
from source_tree import product_modules, string_collections

TABLE = "consent.roles"


def role_lists(source: str) -> list[str]:
    """The literal collections of two or more role codes (and nothing else) in `source`."""
    return [f"line {line}: {sorted(values)}" for line, values in string_collections(source)
            if len(values) >= 2 and values <= ROLES]


def test_no_module_but_the_table_lists_roles():
    found = {name: role_lists(path.read_text()) for name, path in product_modules().items() if name != TABLE}
    assert {name: lists for name, lists in found.items() if lists} == {}


def test_the_check_finds_planted_role_lists():
    planted = ('ALLOWED = frozenset({"HCP", "ASS"})\n'
               'def f(role):\n'
               '    return role in ("PAT", "REP") or role in ["DADM", "PADM", "TCU"]\n'
               'LABELS = {"HCP": "Professional", "ASS": "Assistant"}\n'  # a mapping of labels: not an allow-list
               'PURPOSES = ("NORM", "EMER")\n')
    assert role_lists(planted) == ["line 1: ['ASS', 'HCP']", "line 3: ['PAT', 'REP']",
                                   "line 3: ['DADM', 'PADM', 'TCU']"]


def test_the_table_reads_as_the_ch_epr_rules():
    """The sets as the CH EPR rules give them, so a change to one is a deliberate change here."""
    assert ROLES == {"PAT", "REP", "HCP", "ASS", "TCU", "DADM", "PADM"}
    assert (PATIENT_SIDE, PROFESSIONALS, DELEGATING) == ({"PAT", "REP"}, {"HCP", "ASS"}, {"ASS", "TCU"})
    assert EMERGENCY_USERS == {"HCP", "ASS"} and PROFESSIONAL_AUTHORS == {"HCP", "ASS", "TCU"}
    assert IDENTITY_FEEDERS == IDENTITY_READERS == {"HCP", "ASS", "TCU", "DADM", "PADM"}
    assert (MERGERS, REVIEWERS) == ({"DADM", "PADM", "TCU"}, {"DADM", "PADM"})

