"""Which key-encryption keys each gateway process holds: the heartbeat of key rotation under load.

Why: every node reads its own keyring file (from its secret store), and each worker re-reads it only
when it changes. A key promoted (wrapping new data keys) before some worker holds it would make that
worker's reads of the new rows fail; a key retired while some worker still wraps under it would leave
rows nobody can open. So each process reports what it holds, active key first, every few seconds
(`KeyHeartbeat`, started with the app and by the bridge), and the `keys` commands decide on the live
reports: `promote` once every live holder holds the new key, `rewrap` and `retire` once every live
holder wraps under it. A holder not seen for `stale_after` is gone (a crashed worker; a clean stop
removes its row). In the database rather than Redis so that the embedded default works the same.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, delete, insert, select, update

from adapters.cara.crypto import Keyring
from adapters.cara.store.schema import key_holder

log = logging.getLogger("epr.store.keys")


def _now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Holder:
    holder: str  # host:pid
    key_ids: tuple[str, ...]  # the active one first
    seen_at: datetime

    @property
    def active(self) -> str:
        return self.key_ids[0]


class KeyHolders:
    def __init__(self, *, engine: Engine):
        self.engine = engine

    def report(self, holder: str, key_ids: list[str]) -> None:
        values = {"key_ids": ",".join(key_ids), "seen_at": _now()}
        with self.engine.begin() as connection:
            if not connection.execute(update(key_holder).where(key_holder.c.holder == holder).values(**values)).rowcount:
                connection.execute(insert(key_holder).values(holder=holder, **values))

    def forget(self, holder: str) -> None:
        with self.engine.begin() as connection:
            connection.execute(delete(key_holder).where(key_holder.c.holder == holder))

    def live(self, *, stale_after: float) -> list[Holder]:
        since = _now() - timedelta(seconds=stale_after)
        with self.engine.connect() as connection:
            rows = connection.execute(select(key_holder).where(key_holder.c.seen_at >= since)
                                      .order_by(key_holder.c.holder)).all()
        return [Holder(row.holder, tuple(row.key_ids.split(",")), row.seen_at) for row in rows]


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class KeyHeartbeat:
    """A thread: re-read the keyring file if it changed, then report the keys held, every `interval`."""

    def __init__(self, *, keyring: Keyring, holders: KeyHolders, interval_seconds: float):
        self._keyring, self._holders, self._interval = keyring, holders, interval_seconds
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self.holder = this_process()

    def beat(self) -> None:
        self._keyring.refresh()
        self._holders.report(self.holder, self._keyring.key_ids)

    def start(self) -> None:
        """The first report before this process serves: a worker just started (with a keyring file that may
        lag) is seen by `keys promote` before it takes a request, never a beat later."""
        self._beat_once()
        self._thread = threading.Thread(target=self._run, name="key-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        try:
            self._holders.forget(self.holder)
        except Exception:  # noqa: BLE001 - the store may be down at stop: the row goes stale instead
            log.warning("the key holder row of %s could not be removed", self.holder)

    def _beat_once(self) -> None:
        try:
            self.beat()
        except Exception:  # noqa: BLE001 - the store or the keyring file may be away: next round
            log.warning("key heartbeat failed; retrying", exc_info=True)

    def _run(self) -> None:
        while not self._stopping.wait(self._interval):
            self._beat_once()
