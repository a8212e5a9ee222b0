"""`/health/ready` names the dependency that is down and answers 503 then: the real PostgreSQL and
Redis taken away behind a TCP forwarder (as a network or host failure does), and the audit ledger held
by a stuck writer while the database itself still answers."""

from __future__ import annotations

import os
import sqlite3
from urllib.parse import urlsplit

import pytest
from sqlalchemy import create_engine

from conftest import fresh_postgres_url, running_gateway, sqlite_url
from functional.tcp_proxy import TcpProxy


def through_proxy(url: str) -> tuple[str, TcpProxy]:
    parts = urlsplit(url)
    proxy = TcpProxy(parts.hostname, parts.port)
    return url.replace(f"{parts.hostname}:{parts.port}", f"127.0.0.1:{proxy.port}"), proxy


def ready(gateway):
    response = gateway.client.get("/health/ready")
    return response.status_code, response.json()


def test_all_dependencies_up(tmp_path, database_url):
    with running_gateway(tmp_path, database_url) as gateway:
        assert ready(gateway) == (200, {"status": "ready", "checks": {"database": "up", "ledger": "up"}})


@pytest.mark.postgres
def test_the_database_down_is_named_and_answers_503(tmp_path):
    url, proxy = through_proxy(fresh_postgres_url())
    with running_gateway(tmp_path, url) as gateway:
        assert ready(gateway)[0] == 200
        proxy.cut()
        status, body = ready(gateway)
        search = gateway.find()
        proxy.restore()  # the gateway's stop signs the ledger's head
        again = ready(gateway)
    proxy.close()

    assert (status, body) == (503, {"status": "unavailable", "checks": {"database": "down", "ledger": "down"}})
    assert search.status_code == 503  # what the probe says is what an exchange meets
    assert again == (200, {"status": "ready", "checks": {"database": "up", "ledger": "up"}})


@pytest.mark.postgres
def test_redis_down_is_named_and_answers_503(tmp_path):
    redis_url, proxy = through_proxy(os.environ["EPR_TEST_REDIS_URL"])
    with running_gateway(tmp_path, sqlite_url(tmp_path), redis_url=redis_url, workers=2) as gateway:
        assert ready(gateway) == (200, {"status": "ready", "checks": {"database": "up", "ledger": "up", "redis": "up"}})
        proxy.cut()
        status, body = ready(gateway)
    proxy.close()

    assert (status, body) == (503, {"status": "unavailable",
                                    "checks": {"database": "up", "ledger": "up", "redis": "down"}})


def hold_the_ledger(database_url: str, tmp_path):
    """Another writer holding the ledger's append lock (a stuck transaction): SQLite's write lock, or the
    ledger's advisory lock on PostgreSQL."""
    if database_url.startswith("sqlite"):
        holder = sqlite3.connect(str(tmp_path / "data" / "gateway.sqlite3"), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        return holder.close
    engine = create_engine(database_url)
    connection = engine.connect()
    connection.exec_driver_sql("SELECT pg_advisory_lock(7342002)")

    def release() -> None:
        connection.exec_driver_sql("SELECT pg_advisory_unlock(7342002)")
        connection.close()
        engine.dispose()
    return release


def test_a_ledger_held_by_a_stuck_writer_is_named_while_the_database_answers(tmp_path, database_url):
    with running_gateway(tmp_path, database_url) as gateway:
        release = hold_the_ledger(database_url, tmp_path)
        try:
            held = ready(gateway)
        finally:
            release()
        after = ready(gateway)

    assert held == (503, {"status": "unavailable", "checks": {"database": "up", "ledger": "down"}})
    assert after == (200, {"status": "ready", "checks": {"database": "up", "ledger": "up"}})
