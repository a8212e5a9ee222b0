"""SQLite WAL checkpoints in a background thread, not inside the writer's commits.

Why: by default the commit that makes the WAL pass 1,000 pages (≈ 4 MB, ~60 documents of 50 KB) also
copies the WAL into the database file and fsyncs both: that one commit takes several times as long as
the others (bench/README.md). The HL7 v2 bridge's ACKs wait for their batch's commit, so the
checkpoint lands on their latency. Here the writer's connections do no automatic checkpoint and a
thread runs PASSIVE checkpoints, which never block the writer or readers (SQLite copies the frames
no reader needs), and a RESTART once the WAL is long (`_checkpoint`: without it a writer that never
pauses keeps the WAL growing), which holds the writer for one short copy. Durability is unchanged:
each commit still fsyncs the WAL (synchronous=FULL); a checkpoint only moves committed pages into the
database file.
"""

from __future__ import annotations

import logging
import threading

from sqlalchemy import Engine, event, text

log = logging.getLogger("epr.store")
INTERVAL_SECONDS = 0.25  # at 500 documents/s of 50 KB the WAL grows ~6 MB between checkpoints
# Past this many frames (4 KiB pages: 64 MB) the WAL is made to start again from its beginning: see
# `_checkpoint`.
RESTART_FRAMES = 16_384


class WalCheckpointer:
    def __init__(self, engine: Engine, *, interval: float = INTERVAL_SECONDS, restart_frames: int = RESTART_FRAMES):
        self._engine = engine
        self._interval = interval
        self._restart_frames = restart_frames
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._engine.dialect.name != "sqlite":
            return  # PostgreSQL checkpoints on its own
        event.listen(self._engine, "connect", _no_automatic_checkpoint)
        self._engine.dispose()  # connections opened before this reopen with the setting
        self._thread = threading.Thread(target=self._run, name="sqlite-wal-checkpoint", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        self._stop.set()
        self._thread.join(30)
        event.remove(self._engine, "connect", _no_automatic_checkpoint)
        self._checkpoint()  # leave the WAL small

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._checkpoint()

    def _checkpoint(self) -> None:
        """PASSIVE first (copies what it can, blocks nobody). Why RESTART then, when the WAL is long:
        SQLite only rewinds the WAL when a writer starts after a checkpoint that copied every frame;
        under a writer that commits without pause (a migration) a PASSIVE checkpoint never quite
        catches up, so the WAL grows by every byte written (bench/README.md) and every
        page read searches a wal-index that grows with it. RESTART waits for the writer's current
        transaction, copies the few frames PASSIVE left, and the next transaction writes from the
        WAL's start: the writer is held for one short copy every `restart_frames`."""
        try:
            with self._engine.connect() as connection:
                _busy, frames, _copied = connection.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
                if frames >= self._restart_frames:
                    connection.execute(text("PRAGMA wal_checkpoint(RESTART)"))
        except Exception:  # a failed checkpoint loses nothing (the WAL keeps the pages): try next time
            log.warning("SQLite WAL checkpoint failed", exc_info=True)


def _no_automatic_checkpoint(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA wal_autocheckpoint=0")
    cursor.close()
