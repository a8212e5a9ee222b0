"""The cyclic garbage collector held back for the length of a migration run (in the writer and in each
reader process).

Why: a migrated document is a few hundred small container objects (its ebRIM values, the record's
model, rows, audit records) that live for one batch and are freed by reference counting; almost none
are cyclic. With CPython's default thresholds (700, 10, 10) they trigger a young collection every
few documents and a full one, which walks every object of the process (code tables, caches, the
imported FHIR models: over a million), every few thousand (what it cost the migration:
bench/README.md).
So, while the run lasts: what exists before it is frozen out of the collector (`gc.freeze`: it
survived the start-up and stays), and the thresholds are raised; garbage cycles are still collected,
only less often. Both are undone when the run ends (or fails).
"""

from __future__ import annotations

import contextlib
import gc

THRESHOLDS = (50_000, 20, 100)


@contextlib.contextmanager
def collector_held_back():
    previous = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
    try:
        yield
    finally:
        gc.set_threshold(*previous)
        gc.unfreeze()
