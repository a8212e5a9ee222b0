"""The query-side schema (schema.py) and the Alembic migrations describe the same tables."""

from sqlalchemy import create_engine, inspect

from adapters.cara.store.database import migrate
import audit.schema  # noqa: F401 - the audit ledger adds its tables to the shared metadata
import gateway.migration.schema  # noqa: F401 - and so does the migration (journal, holding area)
import adapters.cara.store.outbox_schema  # noqa: F401 - and the community outbox
from adapters.cara.store.schema import metadata


def test_migrated_database_has_exactly_the_tables_and_columns_of_the_schema(tmp_path):
    engine = create_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate(engine)
    migrate(engine)  # a second start is a no-op
    inspector = inspect(engine)

    migrated = {t: sorted(c["name"] for c in inspector.get_columns(t))
                for t in inspector.get_table_names() if t != "alembic_version"}
    declared = {name: sorted(c.name for c in table.columns) for name, table in metadata.tables.items()}
    assert migrated == declared
