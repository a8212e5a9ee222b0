"""Key rotation: every wrapped data key re-wrapped under the keyring's active key.

Ciphertexts are not touched, and each batch commits on its own, so readers keep working while it
runs: a row is readable under its old key until its batch commits and under the new one after.
"""

from __future__ import annotations

from sqlalchemy import Engine, select, update

from adapters.cara.crypto import Keyring
from adapters.cara.store.schema import SEALED_TABLES

_BATCH = 500


def rewrap_data_keys(*, engine: Engine, keyring: Keyring) -> dict[str, int]:
    """Re-wrap every data key not yet under the active key; returns the count per table."""
    active_prefix = keyring.active_key_id.encode() + b":"
    counts: dict[str, int] = {}
    for name, (table, key_column) in SEALED_TABLES.items():
        counts[name] = 0
        last = ""
        while True:
            with engine.begin() as connection:
                rows = connection.execute(
                    select(key_column, table.c.sealed_key).where(key_column > last).order_by(key_column).limit(_BATCH)
                ).all()
                for row_id, wrapped in rows:
                    if not wrapped.startswith(active_prefix):
                        connection.execute(update(table).where(key_column == row_id)
                                           .values(sealed_key=keyring.rewrap(wrapped)))
                        counts[name] += 1
            if len(rows) < _BATCH:
                break
            last = rows[-1][0]
    return counts
