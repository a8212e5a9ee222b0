"""`epr-gateway migrate`: every document of XDM media through the use-case layer, in batches.

The flow, per source document in a stable order (media as given, subsets sorted, documents in
metadata order):
  read + map (worker threads: file I/O, SHA-1, XML) → patient (`ImportExchange.patient_for_import`)
  → relation targets (entryUUID → uniqueId, across packages and runs) → a batch
  → `Exchange.provide_many` as the TCU acting for `--as-gln`, whose transaction also journals every
  document of the batch (stored, already present, held with its sealed copy, rejected).
Because the journal commits with the documents, a run killed at any point and started again skips
exactly what was committed and ends in the state of an uninterrupted run. Decisions that depend on
earlier documents (relation targets) are taken in order on the main thread; workers only read.
"""

from __future__ import annotations

import concurrent.futures
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

from adapters.cara.errors import Conflict, ProfileViolation, RecordError, UnknownPatient
from adapters.cara.model import Submission
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from adapters.infomed.xdm.mapping import MappedDocument, Refused, document_unique_id, map_document, with_relations
from adapters.infomed.xdm.media import MediaProblem, MemberRefused, Package, open_media
from consent.principal import Principal
from gateway.auth.errors import AccessRefused
from gateway.exchange import Exchange
from gateway.import_exchange import ImportExchange
from gateway.migration.journal import Journal, JournalRow

MAX_BATCH_BYTES = 64 * 1024 * 1024  # a batch's documents are in memory together
RELATION_TARGET = "relation-target"
PATIENTS_CACHED = 100_000


def migration_principal(gln: str, *, user_id: str = "infomed-migration") -> Principal:
    """The technical user (TCU, purpose AUTO) on behalf of the responsible professional."""
    return Principal(role="TCU", user_id=user_id, name="Infomed migration", purpose_of_use="AUTO", acting_for=gln)


@dataclass
class Prepared:
    """One source document after reading, mapping and patient resolution (not yet stored)."""

    row: JournalRow
    size: int = 0
    mapped: MappedDocument | None = None
    spid: str | None = None
    payload: dict | None = None  # what the holding area keeps if it is held


@dataclass
class Counts:
    documents: int = 0
    bytes: int = 0
    skipped: int = 0  # already journaled by an earlier (interrupted) run
    outcomes: dict[str, int] = field(default_factory=dict)

    def add(self, row: JournalRow, size: int) -> None:
        self.documents += 1
        self.bytes += size
        self.outcomes[row.outcome] = self.outcomes.get(row.outcome, 0) + 1


class MigrationJob:
    def __init__(self, *, exchange: Exchange, imports: ImportExchange, journal: Journal, tables: CodeTables,
                 principal: Principal, batch: int = 200, workers: int = 2, dry_run: bool = False,
                 on_progress: Callable[[Counts], None] | None = None):
        if batch < 1 or workers < 1:
            raise ValueError("batch and workers must be at least 1")
        self.exchange = exchange
        self.imports = imports
        self.journal = journal
        self.tables = tables
        self.principal = principal
        self.batch = batch
        self.workers = workers
        self.dry_run = dry_run
        self.on_progress = on_progress or (lambda counts: None)
        self.counts = Counts()
        self.dry_rows: list[JournalRow] = []
        self._targets: dict[str, str] = {}  # entryUUID → uniqueId, stored or on its way in this run
        self._pending: list[Prepared] = []
        self._pending_bytes = 0
        self._patients: dict = {}  # (identifier, demographics) → ImportPatient, for this run

    # -- the run ------------------------------------------------------------------------------------
    def run(self, sources: list[Path]) -> None:
        names = [s.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError("two sources have the same name: the journal tells media apart by name")
        done = self.journal.rows_for(names)
        self._targets = self.journal.stored_targets()
        with concurrent.futures.ThreadPoolExecutor(self.workers, thread_name_prefix="xdm-read") as pool:
            for prepared_package in _ordered(pool, self._packages(sources), self._read_package, self.workers * 2):
                for prepared in prepared_package:
                    if prepared.row.source in done:
                        self.counts.skipped += 1
                        continue
                    self._add(self._with_targets(prepared))
        self._flush()

    def retry(self) -> None:
        """Held documents again: mapped with today's tables, patient and targets resolved again."""
        self._targets = self.journal.stored_targets()
        for held in self.journal.held():
            payload = held.payload
            document = ebrim.RegistryObject.from_json(payload["document"])
            subset = ebrim.RegistryObject.from_json(payload["submission_set"]) if payload["submission_set"] else None
            associations = [ebrim.Association(**a) for a in payload["associations"]]
            media = held.source.split("/", 1)[0]
            self._add(self._with_targets(self._prepare_document(held.source, media, document, subset, associations,
                                                                payload["content"])))
        self._flush()

    def _packages(self, sources: list[Path]) -> Iterator[Package | MediaProblem]:
        for source in sources:
            yield from open_media(source)

    # -- reading and mapping (worker threads) ----------------------------------------------------------
    def _read_package(self, item: Package | MediaProblem) -> list[Prepared]:
        if isinstance(item, MediaProblem):
            media = item.source.split("/", 1)[0]
            return [Prepared(JournalRow(item.source, media, "rejected", reason_code="media", reason=item.reason))]
        media = item.source.split("/", 1)[0]
        try:
            metadata = ebrim.parse_metadata(item.metadata)
        except ebrim.MetadataRefused as exc:
            return [Prepared(JournalRow(f"{item.source}/METADATA.XML", media, "rejected", reason_code="metadata",
                                        reason=str(exc)))]
        prepared, seen = [], set()
        for document in metadata.documents:
            uri = document.slot("URI") or ""
            source = f"{item.source}/{uri or document.id}"
            if source in seen:  # two entries naming one file: each is still accounted for once
                source = f"{source}#{document.id}"
            seen.add(source)
            try:
                content = item.read(uri)
            except MemberRefused as exc:
                prepared.append(Prepared(JournalRow(source, media, "rejected", unique_id=document_unique_id(document),
                                                    entry_uuid=document.id, reason_code="file", reason=str(exc))))
                continue
            prepared.append(self._prepare_document(source, media, document, metadata.submission_set,
                                                   metadata.associations, content))
        return prepared

    def _prepare_document(self, source: str, media: str, document: ebrim.RegistryObject,
                          subset: ebrim.RegistryObject | None, associations: list[ebrim.Association],
                          content: bytes) -> Prepared:
        unique_id = document_unique_id(document)
        own = [a for a in associations if a.source == document.id or a.target == document.id]
        payload = {"document": document.to_json(), "submission_set": subset.to_json() if subset else None,
                   "associations": [a.__dict__ for a in own], "content": content}
        row = JournalRow(source, media, "held", unique_id=unique_id, entry_uuid=document.id,
                         code_tables=self.tables.version)
        try:
            mapped = map_document(document, subset, own, content, self.tables)
        except Refused as refused:
            if refused.held:
                return Prepared(replace(row, reason_code=refused.code, reason=refused.reason), len(content),
                                payload=payload)
            return Prepared(replace(row, outcome="rejected", reason_code=refused.code, reason=refused.reason),
                            len(content))
        demographics = mapped.demographics
        # One look-up per patient and demographics per run: an export has many documents per patient,
        # and each look-up is several MPI queries. The consent decision is still made per submission.
        key = (mapped.patient_id, demographics)
        patient = self._patients.get(key)
        if patient is None:
            patient = self.imports.patient_for_import(
                principal=self.principal, identifier=mapped.patient_id, family=demographics.family,
                given=demographics.given, birth_date=demographics.birth_date, gender=demographics.gender)
            if len(self._patients) >= PATIENTS_CACHED:
                self._patients.clear()
            self._patients[key] = patient
        if patient.spid is None:
            return Prepared(replace(row, reason_code=patient.hold_code, reason=patient.reason), len(content),
                            payload=payload)
        return Prepared(row, len(content), mapped, patient.spid, payload)

    # -- in order (main thread) ---------------------------------------------------------------------------
    def _with_targets(self, prepared: Prepared) -> Prepared:
        mapped = prepared.mapped
        if mapped is None:
            return prepared
        resolved, replaces = [], None
        for code, target_uuid in mapped.relation_targets:
            target = self._targets.get(target_uuid)
            if target is None:
                return replace(prepared, mapped=None, row=replace(
                    prepared.row, reason_code=RELATION_TARGET,
                    reason=f"the {code} target {target_uuid} is not (yet) in the record"))
            resolved.append((code, target))
            replaces = target if code == "replaces" else replaces
        document = with_relations(mapped, resolved)
        self._targets[mapped.entry_uuid] = mapped.unique_id  # later documents may name it
        return replace(prepared, mapped=replace(mapped, document=document),
                       row=replace(prepared.row, replaces=replaces))

    def _add(self, prepared: Prepared) -> None:
        self._pending.append(prepared)
        self._pending_bytes += prepared.size
        submissions = sum(1 for p in self._pending if p.mapped is not None)
        if submissions >= self.batch or self._pending_bytes >= MAX_BATCH_BYTES:
            self._flush()

    def _flush(self) -> None:
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        if not pending:
            return
        to_store = [p for p in pending if p.mapped is not None]
        submissions = [Submission(p.mapped.submission_set, (p.mapped.document,), p.spid) for p in to_store]
        if self.dry_run:
            rows = [p.row if p.mapped is None else replace(p.row, outcome="migrated", reason="dry run: not stored")
                    for p in pending]
            self.dry_rows.extend(rows)
            self._count(pending, rows)
            return
        decided: list[JournalRow] = []

        def journal_in_transaction(connection, outcomes) -> None:
            by_index = iter(outcomes)
            rows, held = [], []
            for p in pending:
                row = p.row if p.mapped is None else _outcome_row(p.row, next(by_index))
                rows.append(row)
                if row.outcome == "held" and p.payload is not None:
                    held.append((row, p.payload))
            self.journal.record(connection, rows, held)
            decided[:] = rows

        self.exchange.provide_many(principal=self.principal, submissions=submissions, within=journal_in_transaction)
        for row in decided:  # what was not stored can no longer be a relation target
            if row.outcome not in ("migrated", "already_present") and row.entry_uuid in self._targets:
                del self._targets[row.entry_uuid]
        self._count(pending, decided)

    def _count(self, pending: list[Prepared], rows: list[JournalRow]) -> None:
        for p, row in zip(pending, rows, strict=True):
            self.counts.add(row, p.size)
        self.on_progress(self.counts)


def _outcome_row(row: JournalRow, outcome) -> JournalRow:
    if outcome.error is None:
        created = outcome.result.documents[0].created
        return replace(row, outcome="migrated" if created else "already_present",
                       entry_id=outcome.result.documents[0].entry_id,
                       reason=None if created else "the same uniqueId with the same bytes is already in the record")
    error = outcome.error
    reason = getattr(error, "message", None) or getattr(error, "reason", None) or type(error).__name__
    if isinstance(error, ProfileViolation) and "relatesTo" in (error.issues[0].location or ""):
        return replace(row, outcome="held", reason_code=RELATION_TARGET, reason=reason, replaces=None)
    if isinstance(error, AccessRefused):
        return replace(row, outcome="held", reason_code="access-refused", reason=reason, replaces=None)
    if isinstance(error, UnknownPatient):
        return replace(row, outcome="held", reason_code="unknown-patient", reason=reason, replaces=None)
    code = "conflict" if isinstance(error, Conflict) else "refused" if isinstance(error, RecordError) else "error"
    return replace(row, outcome="rejected", reason_code=code, reason=reason, replaces=None)


def _ordered(pool, items: Iterator, work, window: int) -> Iterator:
    """`work` over `items` on the pool, at most `window` ahead, results in the items' order."""
    futures: list = []
    items = iter(items)
    for item in itertools.islice(items, window):
        futures.append(pool.submit(work, item))
    while futures:
        result = futures.pop(0).result()
        for item in itertools.islice(items, 1):
            futures.append(pool.submit(work, item))
        yield result
