"""How chunks of read documents travel from the reader processes to the writer (`reading.prepared_documents`):
in an anonymous memory file passed over a socket, or through the queue itself, the writer gets exactly
what reading in its own process gives, in the same order, and no descriptor is left open behind a run,
whole or stopped part-way."""

from __future__ import annotations

import multiprocessing
import os
from dataclasses import replace
from multiprocessing import resource_tracker
from pathlib import Path

import pytest

import gateway.migration.reading as reading
from adapters.infomed.generate.export import generate
from adapters.infomed.xdm.codes import CodeTables
from gateway.migration.reading import prepared_documents

TABLES = CodeTables.load([])
EVERY_CHUNK = 0  # `shared_from`: every chunk in a memory file
NO_CHUNK = 1 << 62  # none: the queue carries them all


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> list[Path]:
    out = tmp_path_factory.mktemp("infomed") / "export"
    generate(out=out, documents=150, patients=12, seed=5, as_zip=True, quirks=0.3, subsets_per_media=8)
    return sorted(out.glob("media-*.zip"))


def seen(prepared) -> tuple:
    mapped = prepared.mapped
    return (prepared.position, prepared.row, prepared.size, prepared.security,
            None if mapped is None else (mapped.unique_id, mapped.patient_id,
                                         replace(mapped.document.entry, entry_id=None, submission_set_id=None),  # ids: new each time
                                         mapped.document.content, mapped.relation_targets),
            None if prepared.held is None else prepared.payload)


def open_descriptors() -> int:
    """This process's open descriptors, once multiprocessing's resource tracker runs (started by the first
    reader, it keeps a pipe open for the rest of the process: not a descriptor a run leaves behind)."""
    resource_tracker.ensure_running()
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def chunks_from_memory_files(monkeypatch) -> list[int]:
    """How many documents each chunk taken from a memory file held (the writer's side, this process)."""
    taken: list[int] = []
    received = reading._received_chunk

    def counting(handles, reader):
        chunk = received(handles, reader)
        taken.append(len(chunk))
        return chunk

    monkeypatch.setattr(reading, "_received_chunk", counting)
    return taken


@pytest.mark.parametrize("shared_from", [EVERY_CHUNK, NO_CHUNK], ids=["memory files", "queue"])
def test_the_writer_gets_what_reading_here_gives_in_the_same_order(export, shared_from, chunks_from_memory_files):
    here = [seen(p) for p in prepared_documents(export, TABLES, 0)]
    before = open_descriptors()

    there = [seen(p) for p in prepared_documents(export, TABLES, 2, shared_from=shared_from)]

    assert there == here
    assert len(here) > 100 and {row[4] is None for row in here} == {True, False}  # documents and problems alike
    if shared_from == EVERY_CHUNK:
        assert sum(chunks_from_memory_files) == len(here)  # every row came through a memory file
    else:
        assert chunks_from_memory_files == []
    assert open_descriptors() == before


def test_a_run_stopped_part_way_leaves_no_reader_and_no_descriptor(export, chunks_from_memory_files):
    before = open_descriptors()
    run = prepared_documents(export, TABLES, 2, shared_from=EVERY_CHUNK)
    taken = [next(run) for _ in range(5)]  # the writer stops (an error, say) with chunks still in flight
    run.close()

    assert len(taken) == 5 and chunks_from_memory_files
    assert open_descriptors() == before
    assert [p for p in multiprocessing.active_children() if p.name.startswith("xdm-reader")] == []
