"""The ledger's signed heads kept outside the database: an append-only witness file.

Why: the head is signed at every commit batch, so a database writer cannot rewrite or delete the
latest records without breaking a signature; but it can cut the ledger back to a head it saw earlier
and delete the later checkpoints: every signature left is genuine. A copy of the latest signed head
outside the database shows the cut: `audit verify` compares the ledger against it and names the
records that are gone. The SIEM stream carries the same heads (`audit.shipping`), a second witness
out of the attacker's reach.

The file: one JSON line per signed head (seq, record_hash, signed_at, key_id, signature), appended
with O_APPEND and fsync'd, so it can be made append-only for the gateway's user (`chattr +a`).
Several workers append to it: each appends under an exclusive `flock` and only a head newer than the
file's last one, so lines never interleave and seqs only grow. The verifier takes the highest seq
whose signature verifies; a line that does not verify is reported.

`WitnessWriter` (one thread per worker) appends the committed head read from the database, woken by
each batch (`DatabaseAuditLedger.on_head_signed`) and at most once per `interval_seconds`: the head
is read after its commit, so the witness never holds a head the ledger rolled back, and the file
grows by at most one line per interval (the window a cut can hide in). At stop it writes the last one.
"""

from __future__ import annotations

import base64
import fcntl
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Engine

from audit.ledger import SignedHead, read_head

log = logging.getLogger("epr.audit.witness")
_STAMP = "%Y-%m-%dT%H:%M:%S.%fZ"
_TAIL_BYTES = 4096  # more than one line: the last line is found in the file's last few KB


class WitnessUnreadable(Exception):
    """The witness file is missing or holds no verifiable head."""


def head_line(head: SignedHead) -> str:
    return json.dumps({"seq": head.seq, "record_hash": head.record_hash,
                       "signed_at": head.signed_at.strftime(_STAMP), "key_id": head.key_id,
                       "signature": base64.b64encode(head.signature).decode()}, sort_keys=True,
                      separators=(",", ":"))


def parse_head_line(line: str) -> SignedHead:
    data = json.loads(line)
    return SignedHead(seq=int(data["seq"]), record_hash=str(data["record_hash"]),
                      signed_at=datetime.strptime(data["signed_at"], _STAMP), key_id=str(data["key_id"]),
                      signature=base64.b64decode(data["signature"], validate=True))


def append_head(path: Path, head: SignedHead) -> bool:
    """Append `head` unless the file already ends with it or a later one; fsync. True if written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        last = _last_seq(path)
        if last is not None and last >= head.seq:
            return False
        os.write(descriptor, (head_line(head) + "\n").encode())
        os.fsync(descriptor)
        return True
    finally:
        os.close(descriptor)  # releases the lock


def _last_seq(path: Path) -> int | None:
    head = last_witnessed(path)
    return None if head is None else head.seq


def last_witnessed(path: Path) -> SignedHead | None:
    """The file's last readable line, unverified (how far the witness is: the metrics' witness lag)."""
    with open(path, "rb") as handle:
        handle.seek(0, os.SEEK_END)
        size = handle.tell()
        handle.seek(max(0, size - _TAIL_BYTES))
        lines = handle.read().splitlines()
    for raw in reversed(lines):
        try:
            return parse_head_line(raw.decode())
        except (ValueError, KeyError, TypeError):
            continue
    return None


@dataclass(frozen=True)
class WitnessReading:
    latest: SignedHead | None  # the highest seq whose signature verifies
    bad_lines: tuple[int, ...]  # line numbers (1-based) that do not parse or verify


def read_witness(path: Path, public_keys: dict[str, Ed25519PublicKey]) -> WitnessReading:
    path = Path(path)
    if not path.exists():
        raise WitnessUnreadable(f"the witness file {path} does not exist")
    latest, bad = None, []
    with open(path, encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                head = parse_head_line(line)
            except (ValueError, KeyError, TypeError):
                bad.append(number)
                continue
            if not head.verifies(public_keys):
                bad.append(number)
            elif latest is None or head.seq > latest.seq:
                latest = head
    return WitnessReading(latest, tuple(bad))


class WitnessWriter:
    def __init__(self, *, engine: Engine, path: Path, interval_seconds: float = 1.0):
        self._engine = engine
        self._path = Path(path)
        self._interval = interval_seconds
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._written_seq = -1

    def wake(self, *_batch) -> None:
        """Give to `DatabaseAuditLedger.on_head_signed`: a batch signed a new head."""
        self._woken.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="audit-witness", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        self.write_once()  # the last head, so a clean stop leaves no window

    def write_once(self) -> bool:
        """Append the committed head if it is newer than the last one written. True if appended."""
        head = read_head(self._engine)
        if head is None or head.seq <= self._written_seq:
            if head is not None and head.seq < self._written_seq:
                log.error("the ledger's signed head went back from %d to %d", self._written_seq, head.seq)
            return False
        written = append_head(self._path, head)
        self._written_seq = head.seq
        return written

    def _run(self) -> None:
        while not self._stopping.is_set():
            # An idle poll too: with several workers, another one's commits move the head.
            self._woken.wait(self._interval)
            self._woken.clear()
            try:
                written = self.write_once()
            except Exception:  # noqa: BLE001 - the store or the disk may be down: try again next round
                log.exception("the audit witness could not be written; retrying")
                written = True  # back off for an interval before the next try
            if written:
                # At most one line per interval; after a round that wrote nothing the next batch is
                # witnessed at once (else a head signed just after an idle round waited a whole interval).
                self._stopping.wait(self._interval)
