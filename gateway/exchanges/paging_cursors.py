"""Signed paging cursors: the `_cursor` of a search's `next` link (ITI-67, ITI-81).

Why not `_offset`: an offset counts positions in a result that moves, so a document provided while a
client pages (fhirpy's `fetch_all()`) shifted every later page and an entry came twice. A cursor names
the keyset position instead (the last entry's sort key) and the snapshot the first page saw (its
newest entry), so later pages continue exactly after the previous one and count the same matches.

A cursor is opaque to the client but not secret: `base64url(JSON payload) "." base64url(tag)`, the tag
a keyed MAC from the keyring (`Keyring.mac`, a key derived from the index key for this purpose only,
the same in every worker and after `keys rotate`). The payload holds the search, the position and a
keyed digest of what the cursor is bound to: the search's parameters (all but the paging ones) and the
acting principal's identity (role, user, qualifier, responsible GLN, purpose, bound patient, issuer).
So a changed or invented cursor, and one replayed with other parameters or by another principal, is
refused (400 OperationOutcome, location `_cursor`), never answered as another page. It holds no
content: the position is a sequence number and an entry id or a time, as the search's order has them.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable
from typing import Any

import orjson

from adapters.cara.crypto import Keyring
from adapters.cara.errors import InvalidInput
from consent.principal import Principal

# Not part of what a cursor is bound to: the page size may change between pages, and these move.
PAGING_PARAMS = frozenset({"_cursor", "_offset", "_count"})
MAX_CURSOR_CHARS = 512
ISSUED_REMEMBERED = 10_000
_VERSION = 1
_URLSAFE = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
_TAG_PURPOSE = "paging-cursor"
_BINDING_PURPOSE = "paging-cursor-binding"
NOT_ISSUED = ("_cursor is not a cursor this gateway issued (changed, cut or made up): "
              "follow the next link as it is, or start again without _cursor")
OTHER_SEARCH = ("_cursor belongs to another search (other parameters or another user): "
                "follow the next link as it is, or start again without _cursor")


class PageCursors:
    def __init__(self, *, keyring: Keyring, remembered: int = ISSUED_REMEMBERED):
        self._keyring = keyring
        self._remembered = remembered
        self._issued: dict[tuple, str] = {}

    def issue(self, *, search: str, principal: Principal, params: Iterable[tuple[str, str]],
              position: list[Any]) -> str:
        """The cursor for the page after `position` (JSON values) of `search` as `principal` asked it.
        A cursor is a pure function of these, so the same question (practice software asking the first
        page again and again: the ITI-67 hot path) gets the cursor made the first time (a look-up, not a
        new MAC)."""
        params = tuple(params)
        key = (search, principal, params, tuple(position))
        cursor = self._issued.get(key)
        if cursor is None:
            if len(self._issued) >= self._remembered:
                self._issued.clear()
            cursor = self._issued[key] = self._signed(search, principal, params, position)
        return cursor

    def _signed(self, search: str, principal: Principal, params: Iterable[tuple[str, str]],
                position: list[Any]) -> str:
        payload = orjson.dumps([_VERSION, search, self._binding(search, principal, params), position])
        return f"{_b64(payload)}.{_b64(self._keyring.mac(_TAG_PURPOSE, payload))}"

    def read(self, *, search: str, principal: Principal, params: Iterable[tuple[str, str]],
             cursor: str) -> list[Any]:
        """The position a cursor carries, or InvalidInput (400) if this gateway did not issue it as it is,
        or issued it for another search, other parameters or another principal."""
        payload = self._verified_payload(cursor)
        try:
            version, issued_for, binding, position = orjson.loads(payload)
        except (orjson.JSONDecodeError, ValueError, TypeError):
            raise InvalidInput(NOT_ISSUED, location="_cursor") from None
        if version != _VERSION or not isinstance(position, list):
            raise InvalidInput(NOT_ISSUED, location="_cursor")
        if issued_for != search or binding != self._binding(search, principal, params):
            raise InvalidInput(OTHER_SEARCH, location="_cursor")
        return position

    def _verified_payload(self, cursor: str) -> bytes:
        encoded_payload, dot, encoded_tag = cursor.partition(".")
        if not dot or len(cursor) > MAX_CURSOR_CHARS or not cursor.isascii():
            raise InvalidInput(NOT_ISSUED, location="_cursor")
        try:
            payload, tag = _unb64(encoded_payload), _unb64(encoded_tag)
        except (binascii.Error, ValueError):
            raise InvalidInput(NOT_ISSUED, location="_cursor") from None
        if not self._keyring.verify_mac(_TAG_PURPOSE, payload, tag):
            raise InvalidInput(NOT_ISSUED, location="_cursor")
        return payload

    def _binding(self, search: str, principal: Principal, params: Iterable[tuple[str, str]]) -> str:
        # repr of a tuple of strings is unambiguous (quoted, escaped) and cheaper than JSON: this runs
        # for every first page of ITI-67 that has a next one, the gateway's hottest path.
        bound = repr((search, principal.role, principal.user_id, principal.user_id_qualifier,
                      principal.acting_for, principal.purpose_of_use, principal.patient_spid, principal.issuer,
                      sorted((n, v) for n, v in params if n not in PAGING_PARAMS)))
        return _b64(self._keyring.mac(_BINDING_PURPOSE, bound.encode()))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    # Only the URL-safe alphabet without padding, as `_b64` writes it: one spelling per cursor.
    if not text or not set(text) <= _URLSAFE:
        raise ValueError("not unpadded base64url")
    standard = text.replace("-", "+").replace("_", "/")
    data = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    # Only the one canonical spelling: the last character's unused bits would let several strings
    # decode to the same bytes, so a changed cursor could pass as the one issued.
    if _b64(data) != text:
        raise ValueError("not canonical base64url")
    return data
