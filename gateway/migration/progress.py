"""The terminal's view of a migration: a rich progress bar with documents/s, MB/s, ETA and the count
per outcome. The total is estimated up front from the METADATA.XML files (opening tags counted, no
parse), so the ETA is known before the first document is stored."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from adapters.infomed.xdm.media import Package, open_media
from gateway.migration.job import Counts


def estimate_documents(sources: list[Path]) -> int:
    total = 0
    for source in sources:
        for item in open_media(source):
            if isinstance(item, Package):
                total += item.metadata.count(b"ExtrinsicObject ")
    return total


class MigrationProgress:
    def __init__(self, total: int | None, *, console: Console | None = None):
        self._started = time.monotonic()
        self._progress = Progress(
            TextColumn("[bold]migrating"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeRemainingColumn(), TextColumn("{task.fields[outcomes]}"),
            console=console or Console(stderr=True), transient=False)
        self._task = self._progress.add_task("migrate", total=total, rate="", outcomes="")

    def __enter__(self) -> MigrationProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self._progress.stop()

    def update(self, counts: Counts) -> None:
        elapsed = max(time.monotonic() - self._started, 1e-6)
        rate = f"{counts.documents / elapsed:,.0f} docs/s {counts.bytes / elapsed / 1e6:,.1f} MB/s"
        outcomes = " ".join(f"{name}={n}" for name, n in sorted(counts.outcomes.items()))
        if counts.skipped:
            outcomes += f" skipped={counts.skipped}"
        self._progress.update(self._task, completed=counts.documents + counts.skipped, rate=rate, outcomes=outcomes)
