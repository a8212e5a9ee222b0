"""`/health/ready`: whether this worker can serve, and if not, which dependency is down.

Each dependency an exchange cannot happen without is asked, all at once, each within `timeout_seconds`
(a dependency that does not answer in time is down: a load balancer must not wait on it either):
- **database**: a connection from the pool answers `SELECT 1`;
- **ledger**: the audit ledger's append lock can be taken and its head read (a transaction rolled back at
  once): every exchange appends there, so a ledger held by a stuck writer, or whose tables cannot be
  read, stops them all (fail closed) although the database answers;
- **redis**, when configured: `PING` (the policy cache decides; Redis unreachable is a 503 anyway).

Not asked: the community outbox's age. Deliveries wait in the outbox while a community is unreachable
and every exchange of this gateway still works; taking the workers out of the load balancer for it would
turn one community's outage into the whole gateway's. Its age is a metric to alert on.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, wait

from sqlalchemy import Engine, text

from audit.ledger import lock_ledger

UP, DOWN = "up", "down"


def database_answers(engine: Engine) -> None:
    with engine.connect() as connection:
        connection.execute(text("SELECT 1"))


def ledger_appendable(engine: Engine, timeout_seconds: float) -> None:
    """Take the ledger's append lock, waiting at most `timeout_seconds`, read its head, roll back."""
    milliseconds = int(timeout_seconds * 1000)
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        if sqlite:  # the pool's connections wait 30 s for SQLite's write lock: not a probe's time
            connection.connection.dbapi_connection.execute(f"PRAGMA busy_timeout = {milliseconds}")
        transaction = connection.begin()
        try:
            if not sqlite:
                connection.exec_driver_sql(f"SET LOCAL lock_timeout = '{milliseconds}ms'")
            lock_ledger(connection)
            connection.exec_driver_sql("SELECT seq FROM audit_head WHERE id = 1").first()
        finally:
            transaction.rollback()
            if sqlite:
                connection.connection.dbapi_connection.execute("PRAGMA busy_timeout = 30000")


class Readiness:
    def __init__(self, checks: dict[str, Callable[[], None]], *, timeout_seconds: float = 2.0):
        self.checks = checks
        self.timeout_seconds = timeout_seconds
        self._pool = ThreadPoolExecutor(max_workers=len(checks), thread_name_prefix="readiness")

    def __call__(self) -> dict[str, str]:
        """{dependency: "up" | "down"}; a check that raises or does not answer in time is down."""
        futures = {name: self._pool.submit(check) for name, check in self.checks.items()}
        wait(futures.values(), timeout=self.timeout_seconds)
        return {name: UP if future.done() and future.exception() is None else DOWN
                for name, future in futures.items()}


def readiness(*, engine: Engine, redis_url: str | None, timeout_seconds: float = 2.0) -> Readiness:
    checks: dict[str, Callable[[], None]] = {
        "database": lambda: database_answers(engine),
        "ledger": lambda: ledger_appendable(engine, timeout_seconds / 2),
    }
    if redis_url:
        from gateway.redis_client import redis_client

        client = redis_client(redis_url, socket_timeout=timeout_seconds / 2, socket_connect_timeout=timeout_seconds / 2)
        checks["redis"] = client.ping
    return Readiness(checks, timeout_seconds=timeout_seconds)
