"""Several writer processes for one migration into PostgreSQL (`migrate --workers N`).

Why: one writer is one Python process storing (access decision, sealing, registry rows, ledger) and,
on PostgreSQL, waiting on each commit; the server takes several writers at once (row locks, the
ledger's advisory lock only around the append), so N processes, each reading, mapping and storing its
share (`reading.Share`: by local patient), go about N times as far. SQLite has one writer by design:
there the run keeps one writer and N reader processes. The choice is made here, on the store, once.

Each writer builds its own parts (engine, keys, ledger: `parts`, a picklable callable the composition
root gives) and runs the same `MigrationJob` on its share: the same use-case (`provide_many`), the same
journal rows in the same transactions, so the run stays resumable after a kill at any point, whichever
process dies. The parent collects progress and each writer's counts into one run; what a writer could
not decide alone (a relation target in another writer's share) it hands back, and the parent decides
those at the end, in the run's order. The report is built from the journal, as for one writer.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue as queue_module
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from adapters.infomed.xdm.codes import CodeTables
from consent.principal import Principal
from gateway.exchanges.failures import is_dependency_failure
from gateway.migration.job import Counts, MigrationJob, source_names
from gateway.migration.reading import Prepared, Share, described, stop_processes

log = logging.getLogger("epr.migration")
SEVERAL_WRITERS = ("postgresql",)  # the stores that take several writers at once
REPORT_GRACE_SECONDS = 5.0  # a writer that ended cleanly has this long for its last message to arrive
WriterParts = Callable[[], tuple]  # () → (DocumentExchange, ImportExchange, Journal), built in the writer


def writer_processes(*, dialect: str, workers: int) -> int:
    """How many processes write the run: `workers` on a store that takes several writers (PostgreSQL),
    else one (SQLite: `workers` then read and map beside it)."""
    return workers if dialect in SEVERAL_WRITERS and workers > 1 else 1


class WriterFailed(Exception):
    """A writer process stopped (an error, or killed): the run stops; what was committed is journaled."""


@dataclass(frozen=True)
class _Plan:
    sources: tuple[str, ...]
    tables: CodeTables
    principal: Principal
    batch: int
    parts: WriterParts
    earlier_targets: dict[str, str]  # entryUUID → uniqueId stored before the run (`MigrationJob.run`)


class _ParentGone(Exception):
    """The process that started this writer is gone (killed): nobody collects what it does."""


def _writer(number: int, writers: int, plan: _Plan, out) -> None:
    """A writer process: its share of the run, through the same job; progress and outcome on `out`."""
    parent = multiprocessing.parent_process()

    def progress(counts: Counts) -> None:
        if parent is not None and not parent.is_alive():
            raise _ParentGone
        out.put(("progress", number, counts))

    try:
        exchange, imports, journal = plan.parts()
        deferred: list[Prepared] = []
        job = MigrationJob(exchange=exchange, imports=imports, journal=journal, tables=plan.tables,
                           principal=plan.principal, batch=plan.batch, workers=0, on_progress=progress,
                           share=Share(number, writers), defer=deferred.append)
        job.run([Path(s) for s in plan.sources], earlier_targets=plan.earlier_targets)
        out.put(("done", number, job.counts, deferred, job.targets_of_this_run()))
    except _ParentGone:
        out.cancel_join_thread()
    except BaseException as error:  # noqa: BLE001 - reported to the parent, which stops the run
        log.exception("migration writer %d stopped", number)
        out.put(("failed", number, described(error), is_dependency_failure(error)))


def run_in_writers(job: MigrationJob, sources: list[Path], *, writers: int, parts: WriterParts) -> None:
    """`job`'s run made by `writers` processes (spawned: no copy of this process's connections or keys);
    `job.counts` ends as the whole run's, `job.on_progress` sees the sum as it goes. Raises WriterFailed
    when one stops; the others are stopped then (a resumed run takes up every share)."""
    source_names(sources)  # refused here, before any writer starts
    context = multiprocessing.get_context("spawn")
    out = context.Queue()
    earlier_targets = job.journal.stored_targets()  # once, before any writer stores anything
    plan = _Plan(tuple(str(s) for s in sources), job.tables, job.principal, job.batch, parts, earlier_targets)
    processes = [context.Process(target=_writer, args=(n, writers, plan, out), daemon=True,
                                 name=f"migration-writer-{n}") for n in range(writers)]
    for process in processes:
        process.start()
    latest: dict[int, Counts] = {}
    finished: dict[int, tuple[list[Prepared], dict]] = {}
    try:
        while len(finished) < writers:
            message = _next(out, processes, finished)
            kind, number, *rest = message
            if kind == "failed":
                raise WriterFailed(f"writer {number} stopped: {rest[0]}")
            latest[number] = rest[0]
            if kind == "done":
                finished[number] = (rest[1], rest[2])
            job.on_progress(_total(latest.values()))
    finally:
        stop_processes(processes, [out], wait=10)
    deferred = [p for stayed, _ in finished.values() for p in stayed]
    targets = {uuid: target for _, theirs in finished.values() for uuid, target in theirs.items()}
    writers_counts = _total(latest.values())
    job.counts = Counts()
    on_progress = job.on_progress
    job.on_progress = lambda counts: on_progress(writers_counts.merged(counts))
    try:
        if deferred:
            job.run_deferred(deferred, targets, earlier_targets=earlier_targets)
    finally:
        job.on_progress = on_progress
        job.counts = writers_counts.merged(job.counts)


def _next(out, processes, finished) -> tuple:
    """The next message of any writer; WriterFailed when one ended without finishing its share."""
    quiet_since: dict[int, float] = {}
    while True:
        try:
            return out.get(timeout=1.0)
        except queue_module.Empty:
            pass
        for number, process in enumerate(processes):
            if number in finished or process.is_alive():
                continue
            if process.exitcode != 0:
                raise WriterFailed(f"writer {number} ended ({_ended(process.exitcode)}) before finishing its share")
            # it ended cleanly: its last message may still be on its way through the pipe
            if time.monotonic() - quiet_since.setdefault(number, time.monotonic()) > REPORT_GRACE_SECONDS:
                raise WriterFailed(f"writer {number} ended without reporting its share")


def _ended(exitcode: int | None) -> str:
    return f"killed by signal {-exitcode}" if exitcode is not None and exitcode < 0 else f"exit code {exitcode}"


def _total(counts) -> Counts:
    total = Counts()
    for one in counts:
        total = total.merged(one)
    return total
