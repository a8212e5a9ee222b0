"""What one MLLP listener may take from its process: frame size, bytes held across connections, time
per frame and between frames, and connections (below the process's file descriptors).

Why each (issue 22 item 9, the outside review): an unfinished frame was buffered whole, with no read
timeout and no cap across connections (10 connections held 300 MB); a peer sending a byte a second
was kept forever; 1,100 idle connections used up the descriptors and took the HTTPS side of the same
process down with them.
"""

from __future__ import annotations

import logging
import resource
from dataclasses import dataclass

log = logging.getLogger("epr.mllp")
MiB = 1024 * 1024


@dataclass(frozen=True)
class MllpLimits:
    max_frame_bytes: int = 32 * MiB  # one message (a frame over it is refused AE and read to its end unheld)
    max_buffered_bytes: int = 128 * MiB  # frames held across connections, read or being answered
    read_timeout_seconds: float = 60.0  # start block to end block (and a TLS handshake, an ACK not taken)
    idle_timeout_seconds: float = 600.0  # between frames: an idle connection is closed (senders reconnect)
    max_connections: int = 256  # before `connection_limit` lowers it to what the descriptors allow

    @classmethod
    def from_settings(cls, settings) -> "MllpLimits":
        # A frame larger than the whole budget could only ever be answered "send it again later".
        frame_bytes = min(settings.mllp_max_frame_bytes, settings.mllp_max_buffered_bytes)
        return cls(max_frame_bytes=frame_bytes, max_buffered_bytes=settings.mllp_max_buffered_bytes,
                   read_timeout_seconds=settings.mllp_read_timeout_seconds,
                   idle_timeout_seconds=settings.mllp_idle_timeout_seconds,
                   max_connections=connection_limit(settings.mllp_max_connections))


def descriptor_limit() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if soft != resource.RLIM_INFINITY else 1 << 20


def connection_limit(configured: int, *, descriptors: int | None = None) -> int:
    """`configured`, lowered to half the process's descriptors (RLIMIT_NOFILE): the other half stays for
    what shares the process — HTTPS connections when `serve` runs both faces, the database pool, the
    ledger, files — so a flood of MLLP connections is refused at the MLLP door and never starves HTTPS."""
    descriptors = descriptor_limit() if descriptors is None else descriptors
    allowed = max(1, min(configured, descriptors // 2))
    if allowed < configured:
        log.warning("MLLP connections limited to %d (EPR_MLLP_MAX_CONNECTIONS=%d): half of the process's %d "
                    "file descriptors (RLIMIT_NOFILE)", allowed, configured, descriptors)
    return allowed


class BufferBudget:
    """Bytes held by all connections of a listener, against `max_buffered_bytes`. Used on the event loop
    only (no lock)."""

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0

    def fits(self, more: int) -> bool:
        return self.used + more <= self.limit

    def change(self, delta: int) -> None:
        self.used += delta
