"""Reading and mapping document messages in worker processes, off the listener's GIL.

Why: on the bridge's hot path reading and mapping a document message is pure Python (normalise,
tokenize, Base64, MDM → Submission), and the group commit's writer thread needs the same GIL for its
inserts. In one process the two threads queue behind each other (the writer's CPU per batch rose
markedly under that contention; figures in bench/README.md). A worker process reads and maps on the other core; the
listener gets the mapped document back (pickled) and only hands it to the group commit.

Only the happy path is done here, and it is pure: no store, no audit, no decision. Anything else (not a
document, unknown sender, no MSH-10, a mapping error, a worker that died) comes back as None and is
handled by `Hl7Channel.handle` in the listener's thread, which answers and audits it as before.
"""

from __future__ import annotations

import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

from adapters.cara.model import Submission
from adapters.infomed.hl7v2 import documents
from adapters.infomed.hl7v2.errors import MessageError
from adapters.infomed.hl7v2.message import Message
from adapters.infomed.hl7v2.structures import structure_for
from gateway.exchanges.patient_readiness import PatientClaim
from gateway.mllp import reading
from gateway.mllp.senders import SenderRegistry

log = logging.getLogger("epr.mllp")
DOCUMENT_CODES = ("MDM", "ORU")


@dataclass(frozen=True)
class ReadDocument:
    """A document message read and mapped, from a sender of the registry (by its index there), with
    what `reading` derives from it (its digest, its patient's claim)."""

    message: Message
    sender_index: int
    digest: str
    submission: Submission
    claim: PatientClaim


def read_document(raw: bytes, registry: SenderRegistry, certificate_subject: str | None) -> ReadDocument | None:
    """The document message's happy path, or None for the use-case to handle (see the module)."""
    try:
        message = Message.parse(raw)
        code, trigger, _ = message.message_type
        if code not in DOCUMENT_CODES:
            return None
        reading.require_control_id(message)
        msh = message.msh
        sender = registry.identify(facility=(msh.component(4, 1), msh.component(4, 2)),
                                   application=msh.component(3, 1), certificate_subject=certificate_subject)
        if sender is None:
            return None
        structure_for(code, trigger)
        digest = reading.digest(message)
        mapped = documents.document_message(message, sender_key=reading.set_key(sender.key, digest),
                                            profile=sender.profile, tables=registry.tables)
        reading.require_storable_dates(message, mapped)
        claim = reading.claim(message, mapped.patient_identifiers)
    except MessageError:
        return None
    return ReadDocument(message, registry.senders.index(sender), digest, mapped.submission, claim)


_registry: SenderRegistry | None = None  # the worker process's copy (set by its initializer)


def _initialise(registry: SenderRegistry) -> None:
    global _registry
    _registry = registry


def _read_in_worker(raw: bytes, certificate_subject: str | None) -> ReadDocument | None:
    return read_document(raw, _registry, certificate_subject)


def _ready() -> bool:
    return True


class MappingPool:
    """`processes` worker processes (spawned: the listener's process has threads, which fork would copy
    mid-state) holding the senders registry."""

    def __init__(self, registry: SenderRegistry, *, processes: int):
        self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_initialise, initargs=(registry,))
        self._broken = False

    def start(self) -> None:
        """Start every worker now (an import costs ~1 s), not on the first message."""
        for future in [self._executor.submit(_ready) for _ in range(self._executor._max_workers)]:
            future.result(timeout=120)

    async def read(self, loop, raw: bytes, certificate_subject: str | None) -> ReadDocument | None:
        if self._broken:
            return None
        try:
            return await loop.run_in_executor(self._executor, _read_in_worker, raw, certificate_subject)
        except BrokenProcessPool:
            # A worker died (killed, out of memory): the listener's thread reads every message from now on.
            log.error("MLLP mapping worker died: reading messages in the listener's process from now on")
            self._broken = True
            return None

    def stop(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)
