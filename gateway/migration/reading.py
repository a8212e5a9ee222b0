"""Reading and mapping XDM media: the CPU half of a migration, in worker processes beside the writer.

Why processes, not threads: inflating, hashing, parsing METADATA.XML and mapping cost about as much
CPU per document as storing it, and the single writer (one SQLite or PostgreSQL transaction per
batch) is itself CPU-bound Python; threads would take turns on one interpreter lock. Each reader
process takes whole media (media i goes to reader i mod N) and sends its documents back in order,
in chunks, through its own bounded queue, so the writer gets them in the stable order of the run
(media as given, subsets sorted, documents in metadata order) and memory stays bounded (at most
`QUEUED_CHUNKS` chunks of `CHUNK_DOCUMENTS` documents / `CHUNK_BYTES` per reader in flight).

How a chunk travels: pickled by the reader into an anonymous memory file (`memfd_create`) whose
descriptor goes to the writer over a socket, while the queue carries the chunk's place (one item per
chunk, in order: the queue still orders and bounds what is in flight). The writer maps the file and
unpickles from it. Through the queue's pipe, the writer read megabytes in 64 KiB pieces and copied them
three times: about a fifth of its interpreter time, and the writer is the migration's bottleneck
(bench/README.md). The file has no name, so nothing of a document outlives the processes, whatever ends
them. Small chunks, and any system without memory files, use the queue itself.

Readers never touch the record: what they produce is the record's model with the patient still
named by its local id. Patient resolution, relation targets and everything stored happen in the
writer, through the use-case layer.
"""

from __future__ import annotations

import contextlib
import logging
import mmap
import multiprocessing
import os
import pickle
import queue as queue_module
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from multiprocessing import reduction
from pathlib import Path

from adapters.cara.document_content import content_problem
from adapters.cara.dates import instant
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import MappedDocument, Refused, document_unique_id, map_document, patient_key
from adapters.infomed.xdm.media import MediaProblem, MemberRefused, Package, open_media
from gateway.migration.collector import collector_held_back
from gateway.migration.journal import JournalRow, storable_source

CHUNK_DOCUMENTS = 64
CHUNK_BYTES = 8 * 1024 * 1024
QUEUED_CHUNKS = 4
WRITER_CHECK_SECONDS = 1.0  # how often a reader waiting on a full queue checks that its writer still runs
SHARED_CHUNK_BYTES = 256 * 1024  # chunks of fewer document bytes go through the queue itself
_END = "end"
_SHARED = "in a memory file"  # the queue's item for a chunk whose pickle waits on the reader's socket
log = logging.getLogger("epr.migration")
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


@dataclass(frozen=True)
class Share:
    """Writer `writer`'s share of the run when `writers` processes write it (PostgreSQL): the documents
    of the local patients that hash to it, and the rows of the media (problems, METADATA.XML) that do.
    By patient, not by media: everything that depends on an earlier document of the same patient (the
    same uniqueId again, a replacement, an addendum, an identity review) stays in one process, in the
    run's order, so each writer decides exactly as one writer would."""

    writer: int
    writers: int

    def takes(self, key: str) -> bool:
        return zlib.crc32(key.encode("utf-8", "surrogatepass")) % self.writers == self.writer


@dataclass
class Prepared:
    """One source document after reading and mapping, then (in the writer) patient resolution."""

    row: JournalRow
    size: int = 0
    mapped: MappedDocument | None = None
    spid: str | None = None
    held: HeldSource | None = None  # what the holding area keeps if it ends up held
    security: str | None = None  # the kind, when the row is a refusal that guards the gateway (audited)
    position: tuple[int, int] | None = None  # (media, row) in the run's order; None: a held one retried
    elsewhere: bool = False  # another writer's share: named (the media's names are given in one pass), not read

    @property
    def payload(self) -> dict | None:
        return self.held.payload() if self.held is not None else None


# -- the pure part (any process) ------------------------------------------------------------------------
def read_media(path: Path, tables: CodeTables, *, index: int = 0, share: Share | None = None) -> Iterator[Prepared]:
    """Every document of one source, or the rows saying why none (or not all) could be read: a source
    is never left out of the report. An error nobody foresaw ends this source with a row naming it
    (what was read before it stays read); it never stops the reader, nor the run. `index`: the media's
    place in the run; `share`: only that writer's rows (None: all)."""
    media = path.name
    sources: set[str] = set()
    rows = (_named_once(prepared, sources) for prepared in _media_rows(path, tables, share))
    for number, prepared in enumerate(rows):
        if not prepared.elsewhere:
            prepared.position = (index, number)  # made just now for this pass: set, not copied
            yield prepared


def _media_rows(path: Path, tables: CodeTables, share: Share | None) -> Iterator[Prepared]:
    media = path.name
    try:
        for item in open_media(path):  # a package, or a problem: never nothing (see media.py)
            yield from read_package(item, tables, share)
    except Exception as exc:  # noqa: BLE001 - per source: the run goes on with the next one
        log.exception("reading %s stopped", media)
        yield Prepared(JournalRow(media, media, "rejected", reason_code="media", reason=(
            f"reading the media stopped: {described(exc)}; what follows is unread")),
            elsewhere=share is not None and not share.takes(media))


def _named_once(prepared: Prepared, sources: set[str]) -> Prepared:
    """Each row of a media under a source name of its own, as the journal keeps it (its key): a second
    problem of the same part (a truncated ZIP with nothing readable in it, say) is numbered, never
    dropped; a name the journal cannot hold as it is (too long, NUL) is made to fit here, so that a
    rerun recognises it."""
    named = storable_source(prepared.row.source)
    source, number = named, 1
    while source in sources:
        number += 1
        source = storable_source(f"{named}#{number}")
    sources.add(source)
    return prepared if source == prepared.row.source else replace(prepared, row=replace(prepared.row, source=source))


def read_package(item: Package | MediaProblem, tables: CodeTables, share: Share | None = None) -> Iterator[Prepared]:
    """The package's rows. With a `share`, the rows of other writers only named (`elsewhere`): a document
    goes by its patient; a row that names none (the media's and the package's problems) by its media."""
    media = item.source.split("/", 1)[0]
    media_is_mine = share is None or share.takes(media)
    if isinstance(item, MediaProblem):
        yield Prepared(JournalRow(item.source, media, "rejected", reason_code="media", reason=item.reason),
                       security=item.security, elsewhere=not media_is_mine)
        return
    for of_a_document, prepared in _package_rows(item, tables, lambda document: share is None or share.takes(
            patient_key(document) or media)):
        yield prepared if media_is_mine or of_a_document else replace(prepared, elsewhere=True)


def _package_rows(item: Package, tables: CodeTables, mine) -> Iterator[tuple[bool, Prepared]]:
    """The package's rows, each with whether it is a document's: its documents (those `mine` does not
    take only named), or the row of its problem."""
    media = item.source.split("/", 1)[0]
    try:
        metadata = ebrim.parse_metadata(item.metadata)
    except ebrim.MetadataRefused as exc:
        yield False, Prepared(JournalRow(f"{item.source}/METADATA.XML", media, "rejected", reason_code="metadata",
                                         reason=str(exc)), security=exc.security)
        return
    except Exception as exc:  # noqa: BLE001 - per package: the media's other packages go on
        log.exception("reading %s/METADATA.XML failed", item.source)
        yield False, Prepared(JournalRow(f"{item.source}/METADATA.XML", media, "rejected", reason_code="error",
                                         reason=f"could not be read: {described(exc)}"))
        return
    if not metadata.documents:
        yield False, Prepared(JournalRow(f"{item.source}/METADATA.XML", media, "rejected", reason_code="metadata",
                                         reason="METADATA.XML lists no document (no ExtrinsicObject)"))
        return
    seen = set()
    for document in metadata.documents:
        uri = document.slot("URI") or ""
        source = f"{item.source}/{uri or document.id}"
        if source in seen:  # two entries naming one file: each is still accounted for once
            source = f"{source}#{document.id}"
        seen.add(source)
        if mine(document):
            yield True, read_document(item, metadata, document, source, media, tables)
        else:
            yield True, Prepared(JournalRow(source, media, "rejected"), elsewhere=True)


def read_document(item: Package, metadata: ebrim.Metadata, document: ebrim.RegistryObject, source: str, media: str,
                  tables: CodeTables) -> Prepared:
    """One document read and mapped, or its row saying why not. Whatever reading or mapping it raises
    is this document's outcome: its siblings, its package and the run go on."""
    try:
        try:
            content = item.read(document.slot("URI") or "")
        except MemberRefused as exc:
            return Prepared(JournalRow(source, media, "rejected", unique_id=document_unique_id(document),
                                       entry_uuid=document.id, reason_code="file", reason=str(exc)),
                            security=exc.security)
        own = [a for a in metadata.associations if a.source == document.id or a.target == document.id]
        return map_prepared(source, media, document, metadata.submission_set, own, content, tables,
                            HeldSource(item.metadata, document.id, content))
    except Exception as exc:  # noqa: BLE001 - per document (see above); logged for whoever reads the log
        log.exception("reading %s failed", source)
        return Prepared(JournalRow(source, media, "rejected", unique_id=document_unique_id(document),
                                   entry_uuid=document.id, reason_code="error",
                                   reason=f"could not be read or mapped: {described(exc)}"))


def map_prepared(source: str, media: str, document: ebrim.RegistryObject, subset: ebrim.RegistryObject | None,
                 associations: list[ebrim.Association], content: bytes, tables: CodeTables,
                 held: HeldSource) -> Prepared:
    row = JournalRow(source, media, "held", unique_id=document_unique_id(document), entry_uuid=document.id,
                     code_tables=tables.version)
    try:
        problem = content_problem(content)
        if problem:
            raise Refused(problem)
        mapped = map_document(document, subset, associations, content, tables)
        _require_storable_dates(mapped, document, subset)
    except Refused as refused:
        if refused.held:
            return Prepared(replace(row, reason_code=refused.code, reason=refused.reason), len(content), held=held)
        return Prepared(replace(row, outcome="rejected", reason_code=refused.code, reason=refused.reason),
                        len(content))
    return Prepared(row, len(content), mapped, held=held)


def _require_storable_dates(mapped: MappedDocument, document: ebrim.RegistryObject,
                            subset: ebrim.RegistryObject | None) -> None:
    """Each date of the mapped document read as the record will store it (`dates.instant`), so a
    date that is well-formed but impossible (month 13, 30 February, hour 24, a leap second, year 0)
    is this document's rejection naming the slot and its value, not an error in a batch's transaction."""
    entry = mapped.document.entry
    dates = (("creationTime", document, entry.creation_time), ("serviceStartTime", document, entry.service_start),
             ("serviceStopTime", document, entry.service_stop),
             ("submissionTime", subset, mapped.submission_set.submission_time))
    for slot, owner, value in dates:
        try:
            instant(value)
        except ValueError as exc:
            written = owner.slot(slot) if owner is not None else value
            raise Refused(f"{slot} {written!r} is not a possible date/time ({exc})") from None


def described(exc: BaseException) -> str:
    """An error in a report line: its type and first line, bounded (never a traceback)."""
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:300] if text else ''}".rstrip(": ")


# -- reader processes ---------------------------------------------------------------------------------
class _WriterGone(Exception):
    """The process that started this reader is gone: nothing will ever take from its queue."""


def _reader(paths: list[tuple[int, str]], tables: CodeTables, out, handles, shared_from: int) -> None:
    """A reader process: its media in order, each as chunks then an end mark, on its own queue (a
    chunk of at least `shared_from` document bytes in a memory file sent over `handles`, see the
    module's docstring)."""
    try:
        with collector_held_back():
            _read_into(paths, tables, out, handles, shared_from)
    except _WriterGone:
        out.cancel_join_thread()  # what is still buffered for the pipe will never be read: do not wait on it
        return
    except BaseException as exc:  # noqa: BLE001 - reported to the writer, which stops the run
        with contextlib.suppress(_WriterGone):
            _put(out, (-1, (_FAILED, f"{type(exc).__name__}: {exc}")))


def _put(out, item) -> None:
    """Onto the bounded queue, waiting while it is full — but not for a writer that is gone: killed
    (SIGKILL included: no `finally` of its runs), it leaves its readers blocked on a full queue for ever
    unless they look. A reader whose writer is gone ends."""
    writer = multiprocessing.parent_process()
    while True:
        try:
            out.put(item, timeout=WRITER_CHECK_SECONDS)
            return
        except queue_module.Full:
            if writer is not None and not writer.is_alive():
                raise _WriterGone from None


def _read_into(paths: list[tuple[int, str]], tables: CodeTables, out, handles, shared_from: int) -> None:
    for index, path in paths:
        chunk: list[Prepared] = []
        size = 0
        for prepared in read_media(Path(path), tables, index=index):
            chunk.append(prepared)
            size += prepared.size
            if len(chunk) >= CHUNK_DOCUMENTS or size >= CHUNK_BYTES:
                _send_chunk(out, handles, index, chunk, in_memory_file=size >= shared_from)
                chunk, size = [], 0
        if chunk:
            _send_chunk(out, handles, index, chunk, in_memory_file=size >= shared_from)
        _put(out, (index, _END))


def _send_chunk(out, handles, index: int, chunk: list[Prepared], *, in_memory_file: bool) -> None:
    """The descriptor first, then its place on the queue: when the writer takes the place, the
    descriptor is already waiting on the socket (held by the kernel, even if this reader has ended)."""
    memory_file = _memory_file(pickle.dumps(chunk, pickle.HIGHEST_PROTOCOL)) if in_memory_file else None
    if memory_file is None:
        _put(out, (index, chunk))
        return
    try:
        reduction.send_handle(handles, memory_file, 0)  # (the process id matters on Windows only)
    except (BrokenPipeError, ConnectionResetError):
        raise _WriterGone from None
    finally:
        os.close(memory_file)
    _put(out, (index, _SHARED))


def _memory_file(payload: bytes) -> int | None:
    """An anonymous memory file holding `payload`, or None where there is none to be had (not Linux,
    no memory left for it): the queue then carries the chunk."""
    try:
        memory_file = os.memfd_create("epr-migration-chunk", os.MFD_CLOEXEC)
    except (AttributeError, OSError):
        return None
    try:
        view = memoryview(payload)
        while view:
            view = view[os.write(memory_file, view):]
    except OSError:
        os.close(memory_file)
        return None
    return memory_file


def _received_chunk(handles, reader: str) -> list[Prepared]:
    """The chunk whose place the writer just took from `reader`'s queue, unpickled from its memory file."""
    if not handles.poll(WRITER_CHECK_SECONDS * 30):  # sent before its place: only a broken reader is late
        raise ReaderFailed(f"{reader} announced a chunk it did not send")
    memory_file = reduction.recv_handle(handles)
    try:
        with mmap.mmap(memory_file, os.fstat(memory_file).st_size, prot=mmap.PROT_READ) as mapped:
            return pickle.loads(mapped)
    finally:
        os.close(memory_file)


class ReaderFailed(Exception):
    """A reader process stopped on an unexpected error (a bug: media problems are outcomes)."""


def prepared_documents(sources: list[Path], tables: CodeTables, workers: int, share: Share | None = None, *,
                       shared_from: int = SHARED_CHUNK_BYTES) -> Iterator[Prepared]:
    """Every document of `sources` (of `share`, when given) read and mapped, in the run's order.
    `workers` reader processes (spawned: no copy of the writer's connections or keys); 0 reads in this
    process (as each of several writer processes does: its share is read where it is written).
    `shared_from`: the document bytes from which a chunk travels in a memory file (tests pass 0 and
    more than any chunk holds to take one way or the other)."""
    if share is not None or workers <= 0 or not sources:
        for index, path in enumerate(sources):
            yield from read_media(path, tables, index=index, share=share)
        return
    workers = min(workers, len(sources))
    context = multiprocessing.get_context("spawn")
    queues = [context.Queue(QUEUED_CHUNKS) for _ in range(workers)]
    sockets = [context.Pipe(duplex=True) for _ in range(workers)]  # (writer's end, reader's end): descriptors
    assigned = [[(i, str(p)) for i, p in enumerate(sources) if i % workers == w] for w in range(workers)]
    processes = [context.Process(target=_reader, args=(assigned[w], tables, queues[w], sockets[w][1], shared_from),
                                 daemon=True, name=f"xdm-reader-{w}") for w in range(workers)]
    for process in processes:
        process.start()
    try:
        for _, readers_end in sockets:
            readers_end.close()  # the reader has its own copy now
        for index in range(len(sources)):
            reader = index % workers
            while True:
                got, chunk = _next(queues[reader], processes[reader])
                if got == -1:
                    raise ReaderFailed(f"reader {reader} failed: {chunk[1]}")
                if chunk == _END:
                    break
                if chunk == _SHARED:
                    chunk = _received_chunk(sockets[reader][0], processes[reader].name)
                yield from chunk
    finally:
        stop_processes(processes, queues, wait=5)
        for writers_end, readers_end in sockets:  # descriptors still in flight are let go of with them
            writers_end.close()
            readers_end.close()


def stop_processes(processes, queues, *, wait: float) -> None:
    """The run's helper processes ended (terminated if still running) and their queues let go of, without
    waiting on what is still buffered for a pipe nobody reads any more."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(wait)
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
