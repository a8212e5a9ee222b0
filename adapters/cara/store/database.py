"""Engine creation and schema migrations for the embedded (SQLite) and production (PostgreSQL) stores."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.pool import QueuePool

_MIGRATIONS = Path(__file__).parent / "migrations"
SQLITE_CACHE_KIB = 32 * 1024  # per connection, at most (see _sqlite_pragmas)


class ConnectionPerThread:
    """A connection each calling thread keeps beside the pool, opened by `open_connection` on its first
    use (a check-out and return cost more than the small statement run on it). Every one is remembered,
    so that `close` reaches them all: the engine's dispose does not (they are not the pool's), and each
    holds the database, its WAL and its shared memory open. A thread that uses it after `close` opens
    another."""

    def __init__(self, open_connection: Callable[[], Any]):
        self._open = open_connection
        self._local = threading.local()
        self._every: list = []
        self._lock = threading.Lock()

    def get(self) -> Any:
        connection = getattr(self._local, "connection", None)
        if connection is None:
            connection = self._local.connection = self._open()
            with self._lock:
                self._every.append(connection)
        return connection

    def discard(self, connection) -> None:
        """This thread's connection closed and forgotten (one that failed is not used again)."""
        self._local.connection = None
        with self._lock:
            if connection in self._every:
                self._every.remove(connection)
        connection.close()

    def close(self) -> None:
        with self._lock:
            kept, self._every = self._every, []
            self._local = threading.local()
        for connection in kept:
            connection.close()


# Told how long each check-out from a pool waited (the composition root adds the metrics' recorder).
POOL_WAIT_LISTENERS: list[Callable[[float], None]] = []


class TimedQueuePool(QueuePool):
    """A QueuePool that tells `POOL_WAIT_LISTENERS` how long `connect` took: the wait for a free
    connection when the pool is exhausted, or the time to open a new one."""

    def connect(self):
        started = time.perf_counter()
        try:
            return super().connect()
        finally:
            for listener in POOL_WAIT_LISTENERS:
                listener(time.perf_counter() - started)


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        # A connection for each thread that may hold one (the server's thread pool has 40): an
        # overflow connection is closed on return, and reopening SQLite re-reads the schema each time.
        # LIFO: the connection returned last is handed out next, so a writer keeps finding its own
        # page cache warm (the indexes it appends to) instead of cycling through 40 cold ones.
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30},
                               pool_size=40, max_overflow=10, pool_use_lifo=True, poolclass=TimedQueuePool)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True, poolclass=TimedQueuePool)


def store_in_process(engine: Engine) -> bool:
    """SQLite: the store runs inside this process (no network between the gateway and its data)."""
    return engine.dialect.name == "sqlite"


# Statements sent to the driver as written (the hot paths: ITI-67, audit appends) are written with
# `?` placeholders; `for_driver` turns them into the dialect's, and datetimes are bound the way
# SQLAlchemy stores them, so rows written or compared this way agree with rows it writes and reads.
def for_driver(sql: str, dialect: str) -> str:
    """`?` placeholders → the driver's (psycopg: `%s`; no literal `%` may appear in `sql`)."""
    return sql.replace("?", "%s") if dialect == "postgresql" else sql


def driver_datetime(value: datetime, dialect: str) -> datetime | str:
    """SQLAlchemy's SQLite DateTime is text in exactly this form, the year in four digits (text
    comparison = time order); a zone, if any, is dropped as SQLAlchemy drops it. isoformat, not
    strftime: a third of the cost on the hot writes, and strftime's %Y leaves years before 1000
    unpadded, which SQLAlchemy does not."""
    if dialect != "sqlite":
        return value
    if value.tzinfo is not None:
        value = value.replace(tzinfo=None)
    return value.isoformat(" ", "microseconds")


# Batched writes (a batch provide, the HL7 v2 answers) send each table's rows as multi-row INSERTs
# written once per shape: no statement compilation, no per-value bind processing, and the driver
# releases and retakes the GIL once per statement rather than once per row.
MAX_BOUND_PARAMETERS = 30_000  # per statement: SQLite binds at most 32,766, psycopg 65,535


@functools.lru_cache(maxsize=512)
def multi_row_insert(table: str, columns: tuple[str, ...], rows: int, dialect: str) -> str:
    row = "(" + ", ".join("?" * len(columns)) + ")"
    return for_driver(f"INSERT INTO {table} ({', '.join(columns)}) VALUES " + ", ".join([row] * rows), dialect)


def insert_rows(connection, table: str, columns: tuple[str, ...], rows: Sequence[tuple]) -> None:
    """`rows` (tuples in `columns` order, datetimes already `driver_datetime`) in the caller's transaction.

    SQLite: as few multi-row INSERTs as the parameter limit allows. PostgreSQL: the one-row INSERT,
    executemany'd (psycopg 3 sends the rows in one pipeline): psycopg converts a statement's `%s` into
    `$n` by a regex pass over the whole statement and remembers the result only for statements of at
    most 50 parameters and 4 KiB (psycopg._queries), so a batch's multi-row INSERT was converted afresh
    every time — about a fifth of the PostgreSQL migration's interpreter time (bench/README.md)."""
    dialect = connection.dialect.name
    if not rows:
        return
    if dialect == "postgresql":
        connection.exec_driver_sql(multi_row_insert(table, columns, 1, dialect), list(rows))
        return
    per_statement = max(1, MAX_BOUND_PARAMETERS // len(columns))
    for start in range(0, len(rows), per_statement):
        chunk = rows[start:start + per_statement]
        connection.exec_driver_sql(multi_row_insert(table, columns, len(chunk), dialect),
                                   tuple(value for row in chunk for value in row))


IN_CHUNK = 500  # values per IN (...) list: well under SQLite's and psycopg's parameter limits


def in_chunks(values: list, size: int = IN_CHUNK):
    """`values` in slices of at most `size`, one IN (...) list each."""
    for start in range(0, len(values), size):
        yield values[start:start + size]


@functools.lru_cache(maxsize=512)
def in_list(count: int) -> str:
    """`(?, ?, …)` with `count` placeholders (for `for_driver` SQL)."""
    return "(" + ", ".join("?" * count) + ")"


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL lets readers run beside the single writer; FULL sync because an acknowledged document
    # must survive a crash; foreign keys are off by default in SQLite.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A batch of documents (a migration's, an HL7 v2 group commit) dirties more pages than SQLite's
    # default 2 MB cache holds: the rest would be spilled to the WAL mid-transaction and the index
    # pages read back cold on the next batch. The cache only grows as a connection uses it.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    # A statement that writes after others in its transaction keeps a statement journal (to undo that
    # statement alone); past 64 KiB — one sealed document body — SQLite spills it to a temporary file,
    # created, written page by page and unlinked for each batch. In memory it is never written at all.
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


def migrate(engine: Engine) -> None:
    """Bring the schema to the latest revision (run at every start; a no-op when current)."""
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Several workers may start together: one migrates, the others wait for it.
            connection.execute(text("SELECT pg_advisory_xact_lock(7342001)"))
        config.attributes["connection"] = connection
        command.upgrade(config, "head")


@contextlib.contextmanager
def driver_cursor(engine: Engine):
    """A driver cursor on a pooled connection, and the dialect: batch look-ups in plain SQL (`for_driver`)."""
    connection = engine.raw_connection()
    try:
        cursor = connection.cursor()
        yield cursor, engine.dialect.name
        cursor.close()
    finally:
        connection.close()  # back to the pool (which ends the read transaction)
