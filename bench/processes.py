"""The processes a benchmark starts, stopped whatever happens.

Why: a benchmark starts gateways, bridges and echo servers, each in a session of its own (so that
stopping it reaches uvicorn's workers and the migration's readers too). Python runs `finally` blocks on
an exception and on Ctrl-C, but not when the benchmark itself is sent SIGTERM or SIGHUP (a closed
terminal, `timeout`, a parent benchmark stopping it): the default action ends the process at once and
every server it started keeps running. `stop_on_signals` (called first thing in every benchmark's main)
turns those signals into `SystemExit`, so that a `ProcessGroup`'s `with` block, or a `finally` calling
`stop_process`, stops each process group started.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP, signal.SIGINT)


def stop_on_signals() -> None:
    """SIGTERM, SIGHUP and SIGINT raise SystemExit in the main thread: `finally` and `with` blocks run."""
    def leave(signum, _frame):
        raise SystemExit(128 + signum)

    for signum in STOP_SIGNALS:
        signal.signal(signum, leave)


def start_process(argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
    """A process in a session of its own (its group is what `stop_process` stops), output into `log`."""
    with open(log, "wb") as out:
        return subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop_process(process: subprocess.Popen | None, *, grace_seconds: float = 15) -> None:
    """SIGTERM to the process's group, SIGKILL to what is left after `grace_seconds`."""
    if process is None:
        return
    for signum, wait in ((signal.SIGTERM, grace_seconds), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, signum)
        except ProcessLookupError:
            break
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; members of its group may not be (a worker ignoring SIGTERM).
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        break


class ProcessGroup:
    """Processes started through it are stopped when the `with` block ends, however it ends."""

    def __init__(self, *, grace_seconds: float = 15) -> None:
        self.grace_seconds = grace_seconds
        self.processes: list[subprocess.Popen] = []

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop_all()

    def start(self, argv: list[str], *, env: dict[str, str], log: Path, cwd: Path) -> subprocess.Popen:
        process = start_process(argv, env=env, log=log, cwd=cwd)
        self.processes.append(process)
        return process

    def adopt(self, process: subprocess.Popen) -> subprocess.Popen:
        """A process started elsewhere in a session of its own, stopped with the others."""
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        while self.processes:
            stop_process(self.processes.pop(), grace_seconds=self.grace_seconds)


if __name__ == "__main__":  # a tiny driver for the tests: start `argv` in a group, then wait to be stopped
    stop_on_signals()
    with ProcessGroup() as group:
        child = group.start(sys.argv[2:], env=dict(os.environ), log=Path(os.devnull), cwd=Path.cwd())
        Path(sys.argv[1]).write_text(str(child.pid))
        signal.pause()
