"""Ids of new registry rows (entries, submission sets): time-ordered UUIDs (RFC 9562 version 7).

Why not uuid4: every index keyed by an entry id (the entry's and the body's primary keys, the token
and relation indexes) then receives each new id at a random place, so a batch of a few hundred
documents dirties a page per document in every such index, and on SQLite each of those pages is
written to the WAL and fsynced again at the commit (on a large record, about as many bytes as the
documents themselves). Time-ordered ids land at the right edge of those indexes. They are
still unguessable enough (74 random bits) and reveal only the creation time, which the entry's
metadata holds anyway; access never depends on an id being secret.
"""

from __future__ import annotations

import os
import time
import uuid


def new_record_id() -> str:
    """A UUIDv7: 48 bits of Unix time in milliseconds, then random bits (version and variant set)."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    value = value & ~(0xF << 76) | 0x7 << 76  # version 7
    value = value & ~(0x3 << 62) | 0x2 << 62  # RFC 9562 variant
    return str(uuid.UUID(int=value))
