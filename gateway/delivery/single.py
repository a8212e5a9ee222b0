"""One deliverer per SQLite database: an exclusive lock on a file beside it (`fcntl.flock`).

Why: SQLite serialises writers, so two deliverers would never take the same row, but they would wait
on each other's transactions for nothing. The process that holds the lock delivers; the others (other
`serve` workers, an `epr-gateway deliver` started beside `serve`) stand by and take over when it stops
— the kernel releases the lock when its holder dies, also by SIGKILL. On PostgreSQL there is no lock:
every deliverer claims rows (`FOR UPDATE SKIP LOCKED`) side by side.
"""

from __future__ import annotations

import fcntl
import os
import threading
from pathlib import Path


class SingleDeliverer:
    """`held()`: whether this process delivers (tries to take the lock when it does not yet)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._descriptor: int | None = None
        self._lock = threading.Lock()

    def held(self) -> bool:
        with self._lock:
            if self._descriptor is not None:
                return True
            self.path.parent.mkdir(parents=True, exist_ok=True)
            descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(descriptor)
                return False
            os.ftruncate(descriptor, 0)
            os.write(descriptor, f"{os.getpid()}\n".encode())
            self._descriptor = descriptor
            return True

    def release(self) -> None:
        with self._lock:
            if self._descriptor is not None:
                os.close(self._descriptor)  # closing the descriptor releases the lock
                self._descriptor = None


def always() -> bool:
    return True
