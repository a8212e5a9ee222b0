"""Reading and mapping XDM media: the CPU half of a migration, in worker processes beside the writer.

Why processes, not threads: inflating, hashing, parsing METADATA.XML and mapping cost about as much
CPU per document as storing it, and the single writer (one SQLite or PostgreSQL transaction per
batch) is itself CPU-bound Python; threads would take turns on one interpreter lock. Each reader
process takes whole media (media i goes to reader i mod N) and sends its documents back in order,
in chunks, through its own bounded queue, so the writer gets them in the stable order of the run
(media as given, subsets sorted, documents in metadata order) and memory stays bounded (at most
`QUEUED_CHUNKS` chunks of `CHUNK_DOCUMENTS` documents / `CHUNK_BYTES` per reader in flight).

Readers never touch the record: what they produce is the record's model with the patient still
named by its local id. Patient resolution, relation targets and everything stored happen in the
writer, through the use-case layer.
"""

from __future__ import annotations

import multiprocessing
import os
import queue as queue_module
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import MappedDocument, Refused, document_unique_id, map_document
from adapters.infomed.xdm.media import MediaProblem, MemberRefused, Package, open_media
from gateway.migration.collector import collector_held_back
from gateway.migration.journal import JournalRow

CHUNK_DOCUMENTS = 64
CHUNK_BYTES = 8 * 1024 * 1024
QUEUED_CHUNKS = 4
_END = "end"
_FAILED = "failed"


class HeldSource:
    """What the holding area keeps of a document, built only when it is held (rare): the ebRIM values
    of the document, its package's submission set and its own associations, and its bytes. The
    package's METADATA.XML is shared by its documents (sent once per chunk) and parsed again here."""

    def __init__(self, metadata_xml: bytes | None, document_id: str, content: bytes, payload: dict | None = None):
        self.metadata_xml = metadata_xml
        self.document_id = document_id
        self.content = content
        self._payload = payload

    def payload(self) -> dict:
        if self._payload is None:
            metadata = ebrim.parse_metadata(self.metadata_xml or b"")
            document = next(d for d in metadata.documents if d.id == self.document_id)
            self._payload = held_payload(document, metadata.submission_set, metadata.associations, self.content)
        return self._payload


def held_payload(document: ebrim.RegistryObject, subset: ebrim.RegistryObject | None,
                 associations: list[ebrim.Association], content: bytes) -> dict:
    own = [a for a in associations if a.source == document.id or a.target == document.id]
    return {"document": document.to_json(), "submission_set": subset.to_json() if subset else None,
            "associations": [a.__dict__ for a in own], "content": content}


@dataclass
class Prepared:
    """One source document after reading and mapping, then (in the writer) patient resolution."""

    row: JournalRow
    size: int = 0
    mapped: MappedDocument | None = None
    spid: str | None = None
    held: HeldSource | None = None  # what the holding area keeps if it ends up held

    @property
    def payload(self) -> dict | None:
        return self.held.payload() if self.held is not None else None


# -- the pure part (any process) ------------------------------------------------------------------------
def read_media(path: Path, tables: CodeTables) -> Iterator[Prepared]:
    for item in open_media(path):
        yield from read_package(item, tables)


def read_package(item: Package | MediaProblem, tables: CodeTables) -> Iterator[Prepared]:
    if isinstance(item, MediaProblem):
        media = item.source.split("/", 1)[0]
        yield Prepared(JournalRow(item.source, media, "rejected", reason_code="media", reason=item.reason))
        return
    media = item.source.split("/", 1)[0]
    try:
        metadata = ebrim.parse_metadata(item.metadata)
    except ebrim.MetadataRefused as exc:
        yield Prepared(JournalRow(f"{item.source}/METADATA.XML", media, "rejected", reason_code="metadata",
                                  reason=str(exc)))
        return
    seen = set()
    for document in metadata.documents:
        uri = document.slot("URI") or ""
        source = f"{item.source}/{uri or document.id}"
        if source in seen:  # two entries naming one file: each is still accounted for once
            source = f"{source}#{document.id}"
        seen.add(source)
        try:
            content = item.read(uri)
        except MemberRefused as exc:
            yield Prepared(JournalRow(source, media, "rejected", unique_id=document_unique_id(document),
                                      entry_uuid=document.id, reason_code="file", reason=str(exc)))
            continue
        own = [a for a in metadata.associations if a.source == document.id or a.target == document.id]
        yield map_prepared(source, media, document, metadata.submission_set, own, content, tables,
                           HeldSource(item.metadata, document.id, content))


def map_prepared(source: str, media: str, document: ebrim.RegistryObject, subset: ebrim.RegistryObject | None,
                 associations: list[ebrim.Association], content: bytes, tables: CodeTables,
                 held: HeldSource) -> Prepared:
    row = JournalRow(source, media, "held", unique_id=document_unique_id(document), entry_uuid=document.id,
                     code_tables=tables.version)
    try:
        mapped = map_document(document, subset, associations, content, tables)
    except Refused as refused:
        if refused.held:
            return Prepared(replace(row, reason_code=refused.code, reason=refused.reason), len(content), held=held)
        return Prepared(replace(row, outcome="rejected", reason_code=refused.code, reason=refused.reason),
                        len(content))
    return Prepared(row, len(content), mapped, held=held)


# -- reader processes ---------------------------------------------------------------------------------
def _reader(paths: list[tuple[int, str]], tables: CodeTables, out) -> None:
    """A reader process: its media in order, each as chunks then an end mark, on its own queue."""
    _end_with_parent()
    try:
        with collector_held_back():
            _read_into(paths, tables, out)
    except BaseException as exc:  # noqa: BLE001 - reported to the writer, which stops the run
        out.put((-1, (_FAILED, f"{type(exc).__name__}: {exc}")))


def _end_with_parent(interval_seconds: float = 0.5) -> None:
    """A writer killed with SIGKILL runs no clean-up: its reader, blocked on a full queue, would wait
    for it forever (an orphan holding a core's memory). The reader ends itself once its parent is gone."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_seconds)
        os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _read_into(paths: list[tuple[int, str]], tables: CodeTables, out) -> None:
    for index, path in paths:
        chunk: list[Prepared] = []
        size = 0
        for prepared in read_media(Path(path), tables):
            chunk.append(prepared)
            size += prepared.size
            if len(chunk) >= CHUNK_DOCUMENTS or size >= CHUNK_BYTES:
                out.put((index, chunk))
                chunk, size = [], 0
        if chunk:
            out.put((index, chunk))
        out.put((index, _END))


class ReaderFailed(Exception):
    """A reader process stopped on an unexpected error (a bug: media problems are outcomes)."""


def prepared_documents(sources: list[Path], tables: CodeTables, workers: int) -> Iterator[Prepared]:
    """Every document of `sources` read and mapped, in the run's order. `workers` reader processes
    (spawned: no copy of the writer's connections or keys); 0 reads in this process."""
    if workers <= 0 or not sources:
        for path in sources:
            yield from read_media(path, tables)
        return
    workers = min(workers, len(sources))
    context = multiprocessing.get_context("spawn")
    queues = [context.Queue(QUEUED_CHUNKS) for _ in range(workers)]
    assigned = [[(i, str(p)) for i, p in enumerate(sources) if i % workers == w] for w in range(workers)]
    processes = [context.Process(target=_reader, args=(assigned[w], tables, queues[w]), daemon=True,
                                 name=f"xdm-reader-{w}") for w in range(workers)]
    for process in processes:
        process.start()
    try:
        for index in range(len(sources)):
            reader = index % workers
            while True:
                got, chunk = _next(queues[reader], processes[reader])
                if got == -1:
                    raise ReaderFailed(f"reader {reader} failed: {chunk[1]}")
                if chunk == _END:
                    break
                yield from chunk
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()
        for process in processes:
            process.join(5)
        for q in queues:
            q.close()
            q.cancel_join_thread()


def _next(q, process):
    while True:
        try:
            return q.get(timeout=1.0)
        except queue_module.Empty:
            if not process.is_alive():
                raise ReaderFailed(f"{process.name} exited with {process.exitcode}") from None
