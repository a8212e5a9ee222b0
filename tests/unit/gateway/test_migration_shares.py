"""The writers' shares of a migration (`reading.Share`): together they are the run, each row exactly once
with the name and place one writer gives it, and every document of one local patient in one share (what
depends on an earlier document of the patient — the same uniqueId again, a replacement — is then
decided in one process, in order)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from adapters.infomed.generate.export import generate
from adapters.infomed.xdm.codes import CodeTables
from gateway.migration.reading import Share, read_media

TABLES = CodeTables.load([])


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("infomed") / "export"
    generate(out=out, documents=120, patients=10, seed=3, as_zip=True, quirks=0.3, subsets_per_media=6)
    return sorted(out.glob("media-*.zip"))


def rows(media: list[Path], share: Share | None) -> list:
    return [prepared for index, path in enumerate(media) for prepared in read_media(path, TABLES, index=index,
                                                                                     share=share)]


def seen(prepared) -> tuple:
    return prepared.position, prepared.row, prepared.size, prepared.security


@pytest.mark.parametrize("writers", [2, 3])
def test_the_shares_together_are_the_run_each_row_once_with_its_name_and_place(export, writers):
    whole = rows(export, None)
    shares = [rows(export, Share(n, writers)) for n in range(writers)]

    assert sorted(seen(p) for share in shares for p in share) == sorted(seen(p) for p in whole)
    assert all(share for share in shares)  # each writer has work
    assert [p.position for p in whole] == sorted(p.position for p in whole)  # places follow the run's order
    assert any(p.row.outcome == "rejected" and p.mapped is None and p.row.entry_uuid is None for p in whole)


@pytest.mark.parametrize("writers", [2, 3])
def test_every_document_of_one_patient_is_in_one_share(export, writers):
    share_of_patient = defaultdict(set)
    media_of_patient = defaultdict(set)
    for n in range(writers):
        for prepared in rows(export, Share(n, writers)):
            if prepared.mapped is not None:
                share_of_patient[prepared.mapped.patient_id].add(n)
                media_of_patient[prepared.mapped.patient_id].add(prepared.row.media)

    assert any(len(media) > 1 for media in media_of_patient.values())  # patients span media: it matters
    assert {patient: len(shares) for patient, shares in share_of_patient.items()} == {
        patient: 1 for patient in share_of_patient}
