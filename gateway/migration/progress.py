"""The terminal's view of a migration: a bar with the count and the time left on one line, the rate and
the count per outcome on the next, so that an 80-column terminal keeps all of it (on one line the
outcomes pushed the bar, the count and the ETA out). The total is estimated up front from the
METADATA.XML files (opening tags counted, no parse) the way the run counts: one row per document
entry, one per part that cannot be read; it is raised to the count should the run find more, and set
to it at the end, so the bar never shows more done than there is."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.text import Text

from adapters.infomed.xdm.media import Package, open_media
from gateway.migration.job import Counts

OUTCOME_WORDS = {"migrated": "migrated", "already_present": "already present", "superseded": "superseded",
                 "held": "held", "rejected": "rejected"}


def estimate_documents(sources: list[Path]) -> int:
    """The rows the run will report: each package's document entries (at least one: a METADATA.XML
    refused or listing none is one row), each unreadable part one."""
    total = 0
    for source in sources:
        for item in open_media(source):
            total += max(1, item.metadata.count(b"ExtrinsicObject ")) if isinstance(item, Package) else 1
    return total


class _TwoLines(Progress):
    def get_renderables(self):
        yield self.make_tasks_table(self.tasks)
        for task in self.tasks:
            yield Text(task.fields["detail"], overflow="fold")


class MigrationProgress:
    def __init__(self, total: int | None, *, console: Console | None = None):
        self._started = time.monotonic()
        self._total = total
        self._progress = _TwoLines(
            TextColumn("[bold]migrating"), BarColumn(bar_width=None), MofNCompleteColumn(), TimeRemainingColumn(),
            console=console or Console(stderr=True), transient=False, expand=True)
        self._task = self._progress.add_task("migrate", total=total, detail="")
        self._done = 0

    def __enter__(self) -> MigrationProgress:
        self._progress.start()
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:  # finished: the bar ends at what was counted, whatever was estimated
            self._progress.update(self._task, total=self._done, completed=self._done)
        self._progress.stop()

    def update(self, counts: Counts) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        self._done = counts.documents + counts.skipped
        detail = [f"{counts.documents / elapsed:,.0f} docs/s", f"{counts.bytes / elapsed / 1e6:,.1f} MB/s"]
        detail += [f"{OUTCOME_WORDS[name]} {counts.outcomes[name]:,}" for name in OUTCOME_WORDS if name in counts.outcomes]
        if counts.skipped:
            detail.append(f"skipped {counts.skipped:,} (journaled before)")
        total = None if self._total is None else max(self._total, self._done)
        self._progress.update(self._task, total=total, completed=self._done, detail="  " + " · ".join(detail))
