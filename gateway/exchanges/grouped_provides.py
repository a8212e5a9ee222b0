"""ITI-65 requests that arrive together share one transaction: a group commit in the request threads.

Why: one document per Bundle is what hospital systems send, each in a request of its own, and a
transaction costs about as much as the document's own rows — begin, the store's look-ups, the ledger's
lock, head and signature, the commit and its fsync (SQLite's one writer: every other provide waits for
it). While one request's transaction commits, the next requests finish their decisions and sealing
(`authorise_many`, no transaction) and queue here; the first of them to find no transaction running
stores all that queued for the same principal as one batch (`batch_provide.combined`), and the others
wait for their outcomes. A request alone is stored as before, at once.

Nothing about an exchange changes: each submission keeps its own decisions, sealing, prepared audit
records and request context, and the store decides each against what the ones before it in the batch
accepted, as it decides a migration's or the bridge's batch, so each gets the answer (and the records)
it would get alone in that order. Only batches of one principal go together: the store answers a
uniqueId its own batch accepted earlier without asking `may_name`, which holds for one submitter only.
A combined transaction that fails for anything but a dependency is stored again request by request, so
that what one request brought fails that request alone.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from gateway.exchanges.batch_provide import AuthorisedBatch, BatchOutcome, combined, split

MAX_GROUP = 64  # submissions of one transaction at most (its audit records and rows are in memory together)


class _Waiting:
    __slots__ = ("batch", "outcomes", "error", "done")

    def __init__(self, batch: AuthorisedBatch):
        self.batch = batch
        self.outcomes: list[BatchOutcome] | None = None
        self.error: BaseException | None = None
        self.done = False

    def result(self) -> list[BatchOutcome]:
        if self.error is not None:
            raise self.error
        return self.outcomes  # type: ignore[return-value]


class GroupedProvides:
    """`store(batch)`: the batch's outcomes, stored together with the batches of the same principal
    queued meanwhile. `store_authorised(batch)` is the seam's one-transaction store; `is_dependency`
    tells a dependency failure (every request gets it) from anything else."""

    def __init__(self, store_authorised: Callable[[AuthorisedBatch], list[BatchOutcome]],
                 is_dependency: Callable[[BaseException], bool], *, max_group: int = MAX_GROUP):
        self._store = store_authorised
        self._is_dependency = is_dependency
        self._max_group = max_group
        self._condition = threading.Condition()
        self._queued: list[_Waiting] = []
        self._storing = False

    @property
    def queued(self) -> int:
        """Batches waiting for the transaction running now to end."""
        with self._condition:
            return len(self._queued)

    def store(self, batch: AuthorisedBatch) -> list[BatchOutcome]:
        mine = _Waiting(batch)
        with self._condition:
            self._queued.append(mine)
            while self._storing and not mine.done:
                self._condition.wait()
            if mine.done:  # stored by another request's thread, with its own
                return mine.result()
            self._storing = True
            group = self._take(mine)
        try:
            self._store_group(group)
        finally:
            with self._condition:
                self._storing = False
                self._condition.notify_all()
        return mine.result()

    def _take(self, first: _Waiting) -> list[_Waiting]:
        """`first` and the queued batches of its principal, in arrival order, up to the group's size."""
        group, rest, size = [], [], 0
        for waiting in self._queued:
            same = waiting.batch.principal == first.batch.principal
            if same and (waiting is first or size + len(waiting.batch.submissions) <= self._max_group):
                group.append(waiting)
                size += len(waiting.batch.submissions)
            else:
                rest.append(waiting)
        self._queued = rest
        return group

    def _store_group(self, group: list[_Waiting]) -> None:
        try:
            if len(group) == 1:
                group[0].outcomes = self._store(group[0].batch)
            else:
                batches = [waiting.batch for waiting in group]
                for waiting, outcomes in zip(group, split(batches, self._store(combined(batches))), strict=True):
                    waiting.outcomes = outcomes
        except BaseException as error:  # noqa: BLE001 - handed to the requests it concerns
            if len(group) == 1 or self._is_dependency(error):
                for waiting in group:
                    waiting.error = error
            else:
                for waiting in group:  # each alone: what one request brought fails it alone
                    self._store_group([waiting])
        finally:
            for waiting in group:
                waiting.done = True
