"""Every identifier check is a full match over explicit ASCII classes (issue 10, item 4): walk each
validator with its valid example spoiled by a trailing newline, surrounding space, or digits from
other scripts, and keep the validating modules off the shortcuts that let those through."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from adapters.cara.identifier_syntax import (
    AHVN13,
    GLN,
    LOCAL_PATIENT_ID,
    MPI_PID,
    SOURCE_ID,
    SPID,
    UNIQUE_ID,
    VALIDATORS,
    InvalidIdentifier,
    ascii_int,
    identifier_problem,
)
from adapters.cara.vocabulary import GLN_SYSTEM, SPID_SYSTEM
from consent.policies import is_valid_gln
from gateway.auth.identifiers import gln_is_valid, oid_urn_is_valid, spid_is_well_formed

# Digits 0–9 in other scripts: each is `str.isdigit()` and `\d`, and `int()` reads most of them.
SCRIPTS = {"full-width": 0xFF10, "arabic-indic": 0x0660, "mathematical-bold": 0x1D7CE, "devanagari": 0x0966}


def spoiled(value: str) -> dict[str, str]:
    middle = len(value) // 2
    variants = {"trailing newline": value + "\n", "trailing CRLF": value + "\r\n", "leading space": " " + value,
                "trailing space": value + " ", "nul": value + "\x00", "tab inside": value[:middle] + "\t" + value[middle:],
                "nbsp inside": value[:middle] + "\u00a0" + value[middle:],
                "zero-width space inside": value[:middle] + "\u200b" + value[middle:],
                "10,000 characters": value + value[-1] * (10_000 - len(value))}
    for script, zero in SCRIPTS.items():
        variants[script] = "".join(chr(zero + int(c)) if c in "0123456789" else c for c in value)
        # One digit only: a value that is mostly ASCII must not slip through either.
        position = next(i for i, c in enumerate(value) if c in "0123456789")
        variants[f"one {script} digit"] = value[:position] + chr(zero + int(value[position])) + value[position + 1:]
    variants["superscript two"] = value.replace("2", "²", 1) if "2" in value else value + "²"
    return variants


@pytest.mark.parametrize("name", sorted(VALIDATORS))
def test_every_validator_accepts_its_example_and_refuses_it_spoiled(name):
    check, valid = VALIDATORS[name]
    assert check(valid) is True
    accepted = {kind: value for kind, value in spoiled(valid).items() if check(value)}
    assert accepted == {}


# The validators outside identifier_syntax that callers still import by their old names.
@pytest.mark.parametrize("check, valid", [(gln_is_valid, "7601000000002"), (is_valid_gln, "7601000000002"),
                                          (spid_is_well_formed, "761337610411353650"),
                                          (oid_urn_is_valid, "urn:oid:2.16.756.5.30")])
def test_the_older_entry_points_are_the_same_checks(check, valid):
    assert check(valid) is True
    assert {kind for kind, value in spoiled(valid).items() if check(value)} == set()


def test_ascii_int_never_raises_and_bounds_the_digits():
    assert [ascii_int(v) for v in ("0", "20", "9" * 18)] == [0, 20, 10**18 - 1]
    assert [ascii_int(v) for v in ("²", "١٢", "-1", "+1", " 1", "1\n", "9" * 19, "9" * 5000, "", None)] == [None] * 10


def test_identifier_problem_names_the_syntax_of_known_systems():
    assert identifier_problem(SPID_SYSTEM, "761337610411353650") is None
    assert "18 ASCII digits" in identifier_problem(SPID_SYSTEM, "７６１３３７６１０４１１３５３６５０")
    assert "GS1" in identifier_problem(GLN_SYSTEM, "7601000000003")
    assert "not an OID" in identifier_problem("urn:oid:２.16", "x")
    assert identifier_problem("urn:oid:2.16.756.5.30.1.999.2.1", "L-1 a") is None  # a local id may hold a space
    assert "printable ASCII" in identifier_problem("urn:oid:2.16.756.5.30.1.999.2.1", "L\n1")
    assert "plain text" in identifier_problem("http://example.org/ids", "L\u200b1")


# The shortcuts that caused the class: `\d` (Unicode digits), `isdigit()`/`isdecimal()`/`isnumeric()`
# (the same), and `re.match` (whose `$` accepts a trailing newline). Validating code uses the
# predicates of adapters/cara/identifier_syntax.py, or `fullmatch` over explicit classes.
FORBIDDEN = re.compile(r"\\d|\.isdigit\(|\.isdecimal\(|\.isnumeric\(|re\.match\(|_PATTERN\.match\(")
SOURCES = [p for root in ("adapters", "consent", "gateway", "audit")
           for p in sorted((Path(__file__).resolve().parents[3] / root).rglob("*.py"))]


def test_no_validating_module_uses_the_shortcuts():
    offenders = [f"{p.name}:{n}: {line.strip()}" for p in SOURCES for n, line in enumerate(p.read_text().splitlines(), 1)
                 if FORBIDDEN.search(line) and "identifier_syntax" not in p.name and "migrations" not in str(p)]
    assert offenders == []


def test_a_refusal_names_the_kind_and_its_rule_and_repeats_no_patient_identifier():
    """Refusals reach the sender's ACK and the audit ledger, which holds no local ids: a patient's
    identifier is never repeated; a document's uniqueId or a professional's GLN may be."""
    for kind in (LOCAL_PATIENT_ID, SPID, AHVN13, MPI_PID):
        problem = kind.problem("PATIENT-4711\t")
        assert "PATIENT-4711" not in problem and kind.name in problem and kind.rule in problem
    assert "'urn:oid:1.2.\\t3'" in UNIQUE_ID.problem("urn:oid:1.2.\t3") and "GLN '760'" in GLN.problem("760")
    assert UNIQUE_ID.read("1.2.3") == "urn:oid:1.2.3" and SOURCE_ID.read("2.16.756") == "urn:oid:2.16.756"
    with pytest.raises(InvalidIdentifier, match="uniqueId '018840' is not an OID of at most 64 characters"):
        UNIQUE_ID.read("018840")
