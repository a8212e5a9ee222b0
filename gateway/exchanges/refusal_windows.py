"""Refusal floods at a face's door: every refusal accountable, without one ledger write per attacker request.

Used by the HTTP face for refused authentications and by the MLLP face for what its door refuses
(oversized, timed-out or malformed frames, connections over the limit, failed TLS handshakes, unknown
senders): one `RefusalWindows` table per face, each naming what it counts and the transaction its
records carry.

Per client address, a *window* opens at its first refusal and lasts `EPR_AUTH_FAILURE_INTERVAL_SECONDS`.
The first refusal of a window is recorded at once, as any refusal was before (the address, what was
refused, the reason); the ones after it in the same window are only counted, by reason, and written as
one aggregate record with the count when the window closes (a background task on the event loop, and a
last drain when the face stops). An address with more than `EPR_AUTH_FAILURE_LIMIT` refusals in its
window is turned away before its request is even read (HTTP: 429 + OperationOutcome with `Retry-After`
before its token is parsed; MLLP: its new connections closed at once), until the window ends; those are
counted into the same aggregate. So 14,000 bad tokens in 15 s from one address cost two or three ledger
records, not 14,000 fsyncs, and the ledger still says how many there were, from where, and why.

The table is bounded (`max_sources`): past it, new addresses share one bucket ("other addresses"),
so an attacker spreading addresses cannot grow memory. Each worker process keeps its own table.
Trade-off, written down: the limit is per address, so clients behind one NAT share it; a client
whose valid requests come from an address that floods is refused 429 for the rest of the window.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

log = logging.getLogger("epr.gateway.refusals")
OTHER_SOURCES = "other addresses"
MAX_REASONS = 16
RATE_LIMITED = "rate-limited (429)"


@dataclass
class _Window:
    opened: float  # monotonic
    opened_at: datetime  # wall clock, for the record
    refusals: int = 1  # the first one included (it was recorded at once)
    repeats: Counter = field(default_factory=Counter)  # reason → count, after the first


@dataclass(frozen=True)
class RefusalSummary:
    """What one closed window adds to the ledger: the refusals after the first, by reason."""

    address: str
    first: datetime
    last: datetime
    count: int
    reasons: tuple[tuple[str, int], ...]
    transaction: str = "authentication"  # the audit record's transaction
    what: str = "refused authentication(s)"  # what was counted, as the record's description says it

    def description(self) -> str:
        by_reason = "; ".join(f"{reason} ×{n}" for reason, n in self.reasons)
        return (f"{self.count} further {self.what} from {self.address} between "
                f"{self.first.isoformat(timespec='seconds')} and {self.last.isoformat(timespec='seconds')}: "
                f"{by_reason}")[:500]


class RefusalWindows:
    """One face's table of windows. `transaction` and `what` name its summaries (see RefusalSummary);
    `turned_away` is the reason counted for a request refused because its address is over the limit."""

    def __init__(self, *, interval_seconds: float = 10.0, limit: int = 20, max_sources: int = 10_000,
                 transaction: str = "authentication", what: str = "refused authentication(s)",
                 turned_away: str = RATE_LIMITED, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], datetime] = lambda: datetime.now(UTC)):
        if interval_seconds <= 0 or limit < 1 or max_sources < 1:
            raise ValueError("interval, limit and max_sources must be positive")
        self.transaction = transaction
        self.what = what
        self.turned_away = turned_away
        self.interval = interval_seconds
        self.limit = limit
        self.max_sources = max_sources
        self._clock = clock
        self._wall = wall
        self._windows: dict[str, _Window] = {}
        # The MLLP face counts on its event loop and in the threads where its use-case runs.
        self._lock = threading.Lock()

    def _key(self, address: str | None) -> str:
        address = address or "-"
        if address in self._windows or len(self._windows) < self.max_sources:
            return address
        return OTHER_SOURCES

    def retry_after(self, address: str | None) -> int | None:
        """Seconds until `address` may try again when it is over the limit (the request turned away is
        counted), else None."""
        with self._lock:
            key = self._key(address)
            window = self._windows.get(key)
            now = self._clock()
            if window is None or now - window.opened >= self.interval or window.refusals < self.limit:
                return None
            window.refusals += 1
            window.repeats[self.turned_away] += 1
            return max(1, int(window.opened + self.interval - now + 0.999))

    def refused(self, address: str | None, reason: str) -> bool:
        """Count one refusal; True when it opens a window and must be recorded now."""
        with self._lock:
            key = self._key(address)
            now = self._clock()
            window = self._windows.get(key)
            if window is not None and now - window.opened < self.interval:
                window.refusals += 1
                if reason not in window.repeats and len(window.repeats) >= MAX_REASONS:
                    reason = "other reasons"  # bounded: an attacker varying the reason cannot grow the table
                window.repeats[reason] += 1
                return False
            # A window that ended with repeats is summarised by `closed` first (the flush task runs every
            # interval/2); replacing it here would lose its count, so keep it for the flush under a new key.
            if window is not None and window.repeats:
                self._windows[f"{key}\x00{window.opened}"] = window
            self._windows[key] = _Window(opened=now, opened_at=self._wall())
            return True

    def closed(self, *, everything: bool = False) -> list[RefusalSummary]:
        """The windows that ended (all of them when `everything`), removed; those with repeats summarised."""
        with self._lock:
            now = self._clock()
            summaries = []
            for key, window in list(self._windows.items()):
                if everything or now - window.opened >= self.interval:
                    del self._windows[key]
                    if window.repeats:
                        last = window.opened_at + timedelta(seconds=min(now - window.opened, self.interval))
                        summaries.append(RefusalSummary(
                            address=key.split("\x00", 1)[0], first=window.opened_at, last=last,
                            count=sum(window.repeats.values()), reasons=tuple(window.repeats.most_common()),
                            transaction=self.transaction, what=self.what))
            return summaries


def write_summaries(auditor, summaries: list[RefusalSummary]) -> None:
    """One ledger record per closed window (outcome 4, like each refusal), committed before returning."""
    auditor.write_now([replace(auditor.record(summary.transaction, None, outcome="4",
                                              outcome_description=summary.description()),
                               client_address=summary.address) for summary in summaries])


class RefusalFlusher:
    """The background task that writes closed windows (every half interval) and, at stop, all of them.
    A ledger that cannot be written keeps them pending for the next round (and says so in the log)."""

    def __init__(self, refusals: RefusalWindows, auditor):
        self._refusals = refusals
        self._auditor = auditor
        self._pending: list[RefusalSummary] = []
        self._task: asyncio.Task | None = None

    async def flush(self, *, everything: bool = False) -> None:
        self._pending += self._refusals.closed(everything=everything)
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        try:
            await asyncio.get_running_loop().run_in_executor(None, write_summaries, self._auditor, batch)
        except Exception:  # AuditUnavailable and its causes: retried, never dropped silently
            log.exception("could not record %d summaries of %s; kept for the next round", len(batch),
                          self._refusals.what)
            self._pending = batch + self._pending

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self._refusals.interval / 2)
            await self.flush()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush(everything=True)
