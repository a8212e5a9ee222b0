"""Group commit across connections: the documents that arrive while a batch commits are gathered
(a few ms at most) and committed together by one writer thread (`Hl7Channel.commit_documents`: one
`provide_many` per sender, one transaction, one fsync). Each ACK leaves once its batch has committed.

A batch closes when every open connection has a document in it (senders wait for their ACK, so each
has at most one), or after MAX_WAIT_SECONDS, which bounds the latency an idle connection adds.

Why: one transaction and fsync per message caps the bridge at a few dozen messages/s; senders wait for
their ACK one message at a time, so throughput comes from many connections sharing commits.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future

log = logging.getLogger("epr.mllp")
MAX_BATCH = 64
# How long a batch may wait for documents still being read and mapped on other connections: bounds the
# latency it adds. Without it, a batch would close as soon as the first document arrived, and the
# documents of the same round would each wait for a commit of their own.
MAX_WAIT_SECONDS = 0.010


class GroupCommit:
    def __init__(self, commit, *, max_batch: int = MAX_BATCH, max_wait: float = MAX_WAIT_SECONDS,
                 senders=lambda: 1):
        self._commit = commit  # list[item] -> list[bytes], one answer per item, in order
        self._senders = senders  # how many connections are open: a batch waits for each of them
        self._max_batch = max_batch
        self._max_wait = max_wait
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._preparing = 0  # messages read whose mapping has not finished yet (they may join a batch)
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="mllp-group-commit", daemon=True)
        self._thread.start()

    def preparing(self, delta: int) -> None:
        """The listener counts the messages it is mapping (+1 when read, -1 when mapped)."""
        with self._lock:
            self._preparing += delta

    def submit(self, item) -> Future:
        future: Future = Future()
        self._queue.put((item, future))
        return future

    def stop(self, timeout: float = 30) -> None:
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self._max_wait
            stopping = False
            while len(batch) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    entry = self._queue.get_nowait()
                except queue.Empty:
                    if remaining <= 0 or (self._preparing <= 0 and len(batch) >= self._senders()):
                        break  # every open connection has its message in: commit what is here
                    try:
                        entry = self._queue.get(timeout=min(remaining, 0.001))
                    except queue.Empty:
                        continue
                if entry is None:
                    stopping = True
                    break
                batch.append(entry)
            self._commit_batch(batch)
            if stopping:
                return

    def _commit_batch(self, batch: list) -> None:
        try:
            answers = self._commit([item for item, _ in batch])
        except Exception as error:  # commit_documents answers failures itself; this is the last guard
            log.exception("MLLP group commit failed")
            for _, future in batch:
                future.set_exception(error)
            return
        for (_, future), answer in zip(batch, answers, strict=True):
            future.set_result(answer)
