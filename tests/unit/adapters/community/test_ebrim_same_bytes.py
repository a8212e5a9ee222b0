"""The ebRIM writer's one-piece shapes change no byte: every submission below — the fixture document as
the community receives it, and the variations that take each other path of the writer (relations,
several documents and authors, no author, every confidentiality, values with markup, line breaks, tabs
and quotes, no description or service times, a name from the MPI, a language that is no xs:language,
two-byte and astral characters) — is written exactly as the writer before them wrote it
(`ebrim_before.py`), and what that writer refused is refused with the same words."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import replace

import pytest

from adapters.community import ebrim
from adapters.community.authors import ResponsibleProfessional
from adapters.community.ebrim import Demographics, OutgoingDocument, OutgoingRelation, OutgoingSubmission, Repository
from unit.adapters.community import ebrim_before
from unit.adapters.community.community_fixtures import (
    MPI_PID,
    PRINCIPAL_GLN,
    SET_ENTRY_UUID,
    SET_UNIQUE_ID,
    author,
    document,
    submission_set,
)

REPOSITORY = Repository("2.16.756.5.30.1.191.1.0.12.3.101", "2.16.756.5.30.1.191.1.0.2.1",
                        "2.16.756.5.30.1.191.1.0.12.3.102")
HOSTILE = 'Bericht <b>&amp; "Zitat"\r\nzweite Zeile\tTab — ß 𝄞 \'einfach\''


def entry_changed(doc, **changes):
    return replace(doc, entry=replace(doc.entry, **changes))


def outgoing(doc=None, number: int = 1, relations=()) -> OutgoingDocument:
    return OutgoingDocument(doc or document(), f"urn:uuid:{uuid.UUID(int=number, version=4)}", tuple(relations),
                            content_id=f"part{number}@epr-gateway")


def submission(*documents: OutgoingDocument, confidentiality: str = "normal", subset=None,
               demographics: Demographics = Demographics()) -> OutgoingSubmission:
    return OutgoingSubmission(subset or submission_set(), SET_UNIQUE_ID, SET_ENTRY_UUID, documents or (outgoing(),),
                              MPI_PID, confidentiality, dt.datetime(2024, 5, 2, 12, 31, tzinfo=dt.UTC),
                              ResponsibleProfessional(PRINCIPAL_GLN, "Valais Responsible", "Hôpital du Valais",
                                                      "2.16.756.5.30.1.145"), demographics)


SUBMISSIONS = {
    "the fixture document": lambda: submission(),
    "restricted": lambda: submission(confidentiality="restricted"),
    "secret": lambda: submission(confidentiality="secret"),
    "a replacement and an addendum": lambda: submission(outgoing(relations=[
        OutgoingRelation("replaces", "urn:uuid:11111111-2222-4333-8444-555555555555"),
        OutgoingRelation("appends", "urn:uuid:66666666-7777-4888-9999-000000000000")])),
    "two documents": lambda: submission(outgoing(), outgoing(document(
        unique_id="urn:oid:2.25.12345678901234567890", title="Zweites"), number=2)),
    "several authors": lambda: submission(outgoing(document(authors=[author(), author("7601000000001", "Ärztin",
                                                                                    "Zoë")]))),
    "no author: the responsible professional": lambda: submission(
        outgoing(document(authors=[])), subset=submission_set(authors=[])),
    "markup, line breaks, tabs and quotes in values": lambda: submission(
        outgoing(entry_changed(document(title=HOSTILE, family=HOSTILE), description=HOSTILE)),
        subset=submission_set(title=HOSTILE)),
    "no description, no service times, no role": lambda: submission(outgoing(entry_changed(
        document(), description=None, service_start=None, service_stop=None, original_provider_role=None))),
    "the name from the MPI": lambda: submission(outgoing(document(family=None)), demographics=Demographics(
        "Müller", ("Anna", "Lena"), "1990-01-31", "female")),
    "a language that is no xs:language": lambda: submission(outgoing(entry_changed(document(), language="de_CH!"))),
    "no submission set title": lambda: submission(subset=submission_set(title=None)),
}

REFUSED = {
    "a character XML cannot carry": lambda: submission(outgoing(document(title="bell \x07"))),
    "no family name anywhere": lambda: submission(outgoing(document(family=None))),
    "a size that is not the content's": lambda: submission(outgoing(entry_changed(document(), size=1))),
    "an id that is no entryUUID": lambda: submission(outgoing(relations=[OutgoingRelation("replaces", "123")])),
}


@pytest.mark.parametrize("name", SUBMISSIONS)
def test_the_same_bytes_as_the_writer_before(name):
    written = ebrim.provide_and_register(SUBMISSIONS[name](), REPOSITORY)
    assert written == ebrim_before.provide_and_register(SUBMISSIONS[name](), REPOSITORY)
    assert b"\n" not in written and b"\r" not in written


@pytest.mark.parametrize("name", REFUSED)
def test_the_same_refusals_as_the_writer_before(name):
    with pytest.raises(ebrim.MetadataNotSendable) as now:
        ebrim.provide_and_register(REFUSED[name](), REPOSITORY)
    with pytest.raises(ebrim.MetadataNotSendable) as before:
        ebrim_before.provide_and_register(REFUSED[name](), REPOSITORY)
    assert str(now.value) == str(before.value)


@pytest.mark.parametrize("parts", [("urn:uuid:0d9c8b7a-6f5e-4d3c-9b2a-1f0e9d8c7b6a", "node"), ("a", "member", "b"),
                                   ("Zoë", "𝄞"), ("",)])
def test_derived_ids_are_the_uuid5_of_their_parts(parts):
    assert ebrim._derived_id(*parts) == f"urn:uuid:{uuid.uuid5(ebrim._IDS, '|'.join(parts))}"
