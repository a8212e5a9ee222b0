"""Signed paging cursors (gateway.exchanges.paging_cursors): the position comes back only for the search, the
parameters and the principal it was issued for; anything else is one of two 400 refusals."""

from __future__ import annotations

import os

import pytest

from adapters.cara.crypto import Keyring
from adapters.cara.errors import InvalidInput
from consent.principal import Principal
from gateway.exchanges.paging_cursors import MAX_CURSOR_CHARS, NOT_ISSUED, OTHER_SEARCH, PageCursors

HCP = Principal(role="HCP", user_id="7601000000002", user_id_qualifier="urn:gs1:gln", issuer="https://issuer")
PARAMS = [("patient.identifier", "urn:oid:2.16.756.5.30.1.127.3.10.3|761337610411353650"), ("status", "current")]
POSITION = [1764640000000000000, 1764630000000000000, "3f1c1b9e-0e4e-4b55-9a43-54c0b2b8e0a1"]


def keyring() -> Keyring:
    return Keyring([("k1", os.urandom(32))], os.urandom(32))


@pytest.fixture
def cursors() -> PageCursors:
    return PageCursors(keyring=keyring())


def issued(cursors: PageCursors) -> str:
    return cursors.issue(search="ITI-67", principal=HCP, params=PARAMS, position=POSITION)


def refusal(cursors: PageCursors, cursor: str, *, search="ITI-67", principal=HCP, params=PARAMS) -> tuple[str, str]:
    with pytest.raises(InvalidInput) as refused:
        cursors.read(search=search, principal=principal, params=params, cursor=cursor)
    return str(refused.value), refused.value.issues[0].location


def test_the_position_comes_back_for_the_same_search_principal_and_parameters(cursors):
    cursor = issued(cursors)
    reordered = [PARAMS[1], PARAMS[0], ("_count", "50"), ("_cursor", cursor)]  # order and paging do not count

    assert cursors.read(search="ITI-67", principal=HCP, params=reordered, cursor=cursor) == POSITION
    assert len(cursor) < MAX_CURSOR_CHARS and set(cursor) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnop"
                                                                   "qrstuvwxyz0123456789-_.")


def test_another_principal_other_parameters_or_another_search_are_refused(cursors):
    cursor = issued(cursors)
    same_user_other_purpose = Principal(**{**HCP.__dict__, "purpose_of_use": "EMER"})

    assert {
        "another user": refusal(cursors, cursor, principal=Principal(role="HCP", user_id="7601000000019",
                                                                     user_id_qualifier="urn:gs1:gln",
                                                                     issuer="https://issuer")),
        "another purpose": refusal(cursors, cursor, principal=same_user_other_purpose),
        "another filter": refusal(cursors, cursor, params=[PARAMS[0]]),
        "another patient": refusal(cursors, cursor, params=[(PARAMS[0][0], PARAMS[0][1][:-1] + "1"), PARAMS[1]]),
        "another search": refusal(cursors, cursor, search="ITI-81"),
    } == dict.fromkeys(["another user", "another purpose", "another filter", "another patient", "another search"],
                       (OTHER_SEARCH, "_cursor"))


@pytest.mark.parametrize("change", ["flip payload", "flip tag", "cut", "no dot", "padded", "standard alphabet",
                                    "not ascii", "too long", "empty", "other key"])
def test_a_changed_or_made_up_cursor_is_refused_as_not_issued(cursors, change):
    cursor = issued(cursors)
    payload, tag = cursor.split(".")
    changed = {
        "flip payload": ("B" if payload[0] != "B" else "C") + payload[1:] + "." + tag,
        "flip tag": payload + "." + ("B" if tag[0] != "B" else "C") + tag[1:],
        "cut": cursor[:-2],
        "no dot": payload + tag,
        "padded": cursor + "==",
        "standard alphabet": cursor.replace("-", "+").replace("_", "/") if ("-" in cursor or "_" in cursor)
        else cursor[:-1] + "+",
        "not ascii": cursor[:-1] + "é",
        "too long": cursor + "A" * MAX_CURSOR_CHARS,
        "empty": "",
        "other key": PageCursors(keyring=keyring()).issue(search="ITI-67", principal=HCP, params=PARAMS,
                                                          position=POSITION),
    }[change]

    assert refusal(cursors, changed) == (NOT_ISSUED, "_cursor")


def test_cursors_of_the_same_keyring_read_in_another_process_and_after_a_key_rotation(tmp_path):
    path = tmp_path / "keyring.json"
    Keyring.create_file(path)
    cursor = PageCursors(keyring=Keyring.load(path)).issue(search="ITI-81", principal=HCP, params=PARAMS,
                                                          position=[7, "2026-12-02T01:00:00+00:00", 5])
    Keyring.add_key_to_file(path)  # `keys rotate` adds a KEK; the index key, hence the MAC key, stays

    assert PageCursors(keyring=Keyring.load(path)).read(search="ITI-81", principal=HCP, params=PARAMS,
                                                        cursor=cursor) == [7, "2026-12-02T01:00:00+00:00", 5]


def test_every_other_last_character_is_refused(cursors):
    """The last character of unpadded base64url carries unused bits: several spellings decode to the
    same bytes. Only the one issued is read; the others are refused as changed (the HTTP test of a
    changed trail cursor failed whenever its change fell on those bits)."""
    cursor = issued(cursors)
    payload, tag = cursor.split(".")
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    changed = [f"{payload[:-1]}{c}.{tag}" for c in alphabet if c != payload[-1]]
    changed += [f"{payload}.{tag[:-1]}{c}" for c in alphabet if c != tag[-1]]

    assert {refusal(cursors, c) for c in changed} == {(NOT_ISSUED, "_cursor")}
