"""Multi-row inserts as each driver takes them best (`insert_rows`): SQLite one multi-row INSERT under
its parameter limit; PostgreSQL the one-row INSERT executemany'd, a statement short enough for psycopg
to remember its conversion (it converts a longer one, or one with more parameters, afresh every time).
Every row is stored either way."""

import psycopg._queries
import pytest
from sqlalchemy import create_engine, event, text

from adapters.cara.store.database import insert_rows
from conftest import fresh_postgres_url, sqlite_url

COLUMNS = tuple(f"c{i}" for i in range(12))


@pytest.mark.parametrize("store", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_every_row_is_stored_in_statements_the_driver_takes_best(store, tmp_path):
    (tmp_path / "data").mkdir()
    engine = create_engine(sqlite_url(tmp_path) if store == "sqlite" else fresh_postgres_url())
    inserts: list[tuple[str, bool]] = []

    def seen(conn, cursor, statement, parameters, context, executemany):
        if statement.startswith("INSERT"):
            inserts.append((statement, executemany))

    event.listen(engine, "before_cursor_execute", seen)
    rows = [tuple(f"{n}-{c}" for c in COLUMNS) for n in range(1000)]
    with engine.begin() as connection:
        connection.execute(text(f"CREATE TABLE bench_rows ({', '.join(c + ' TEXT' for c in COLUMNS)})"))
        insert_rows(connection, "bench_rows", COLUMNS, rows)
        stored = connection.execute(text(f"SELECT {', '.join(COLUMNS)} FROM bench_rows")).all()
    engine.dispose()

    assert sorted(tuple(r) for r in stored) == sorted(rows)
    [(statement, executemany)] = inserts
    if store == "postgres":
        assert executemany and statement.count("%s") == len(COLUMNS)
        assert len(COLUMNS) <= psycopg._queries.MAX_CACHED_STATEMENT_PARAMS
        assert len(statement.encode()) <= psycopg._queries.MAX_CACHED_STATEMENT_LENGTH
    else:
        assert not executemany and statement.count("?") == len(COLUMNS) * len(rows)
