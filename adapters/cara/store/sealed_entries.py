"""A document's stored form: how its metadata, body and submission set are sealed and opened, and
what of it is indexed in the clear (`document_token`).

Each part is sealed under its own data key with associated data that binds it to its row (the entry
id and uniqueId; the metadata from version 2 on also its version), so a ciphertext copied onto
another row, or an older version copied back, does not open. This module is the one place that
knows those bindings: the provide path, the metadata updates and every reader go through it.
"""

from __future__ import annotations

from typing import NamedTuple

import orjson

from adapters.cara.crypto import DecryptionFailed, Keyring, Sealed
from adapters.cara.errors import IntegrityFailure
from adapters.cara.mhd_search import normalise_name
from adapters.cara.model import DocumentEntry, NewDocument, SubmissionSet


class SealedEntry(NamedTuple):
    """An entry's row as the store reads it to open it: what the associated data binds, the clear
    status (it changes; the sealed metadata keeps the first one) and the recorded metadata version.
    The version has no default: an entry opened without the version its row records would be opened
    with the first version's binding, which fails for every relabelled or edited document (and would
    be reported as tampering)."""

    id: str
    unique_id: str
    status: str
    sealed_key: bytes
    sealed: bytes
    version: int


def metadata_context(entry_id: str, unique_id: str, version: int = 1) -> str:
    """Version 1 keeps the context entries were first sealed with; later versions bind their number,
    so an older version's ciphertext copied back onto the row does not decrypt as the current one."""
    base = f"entry-metadata|{entry_id}|{unique_id}"
    return base if version == 1 else f"{base}|v{version}"


def body_context(entry_id: str, unique_id: str) -> str:
    return f"entry-body|{entry_id}|{unique_id}"


def set_context(submission_set_id: str, unique_id: str) -> str:
    return f"submission-set|{submission_set_id}|{unique_id}"


def seal_entry(keyring: Keyring, entry: DocumentEntry) -> Sealed:
    """The whole entry (every XDS metadata value), bound to its id, uniqueId and version. orjson writes
    a dataclass as `asdict` would (the JSON `DocumentEntry.from_json` reads), many times faster."""
    return keyring.seal(orjson.dumps(entry), metadata_context(entry.entry_id, entry.unique_id, entry.version))


def open_entry(keyring: Keyring, row: SealedEntry) -> DocumentEntry:
    """The entry a row holds, opened with the version the row records; a row that does not open, or
    whose metadata is not the version recorded beside it, is an IntegrityFailure (never served)."""
    try:
        plain = keyring.open(Sealed(row.sealed_key, row.sealed), metadata_context(row.id, row.unique_id, row.version))
    except DecryptionFailed as exc:
        raise IntegrityFailure(f"the metadata of document {row.id} does not decrypt") from exc
    entry = DocumentEntry.from_json(orjson.loads(plain))
    if entry.version != row.version:
        raise IntegrityFailure(f"the metadata of document {row.id} is not its recorded version")
    return entry


def seal_body(keyring: Keyring, document: NewDocument) -> Sealed:
    """A document's bytes sealed under their own data key, bound to the entry id and uniqueId."""
    return keyring.seal(document.content, body_context(document.entry.entry_id, document.entry.unique_id))


def open_body(keyring: Keyring, entry: DocumentEntry, sealed: Sealed) -> bytes:
    try:
        return keyring.open(sealed, body_context(entry.entry_id, entry.unique_id))
    except DecryptionFailed as exc:
        raise IntegrityFailure(f"the content of document {entry.entry_id} does not decrypt") from exc


def seal_submission_set(keyring: Keyring, subset: SubmissionSet) -> Sealed:
    return keyring.seal(orjson.dumps(subset), set_context(subset.submission_set_id, subset.unique_id))


def open_submission_set(keyring: Keyring, set_id: str, unique_id: str, sealed: Sealed) -> SubmissionSet:
    """The submission set a row holds, bound to its id and uniqueId; one that does not open is an
    IntegrityFailure (never served)."""
    try:
        plain = keyring.open(sealed, set_context(set_id, unique_id))
    except DecryptionFailed as exc:
        raise IntegrityFailure(f"the submission set {set_id} does not decrypt") from exc
    return SubmissionSet.from_json(orjson.loads(plain))


def index_tokens(keyring: Keyring, entry: DocumentEntry) -> list[dict]:
    """The entry's `document_token` rows: the codes ITI-67 searches in the clear, author names as keyed
    hashes (an author can be the patient)."""
    rows = []

    def add(param: str, system: str | None, value: str | None) -> None:
        if value:
            rows.append({"entry_id": entry.entry_id, "param": param, "system": system, "value": value})

    for code in entry.class_codes:
        add("category", code.system, code.code)
    add("type", entry.type_code.system, entry.type_code.code)
    add("setting", entry.practice_setting.system, entry.practice_setting.code)
    add("facility", entry.facility_type.system, entry.facility_type.code)
    add("format", entry.format_code.system, entry.format_code.code)
    for code in entry.event_codes:
        add("event", code.system, code.code)
    for code in entry.confidentiality:
        add("security-label", code.system, code.code)
    for related in entry.related:
        identifier = related.get("identifier") or {}
        add("related", identifier.get("system"), identifier.get("value"))
    for author in entry.authors:
        for family in author.family:
            add("author.family", None, keyring.index_hash("author.family", normalise_name(family)))
        for given in author.given:
            add("author.given", None, keyring.index_hash("author.given", normalise_name(given)))
    return rows
