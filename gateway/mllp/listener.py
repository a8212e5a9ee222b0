"""The MLLP listener: many persistent connections (`connection.py`), one message at a time on each
(original mode: the sender waits for its ACK), TLS with client certificates when configured, within the
limits of `limits.py`, its refusals accounted by the door (`door.py`).

Each message is handed to the use-case (`Hl7Channel.handle`, blocking: store and ledger) in a thread
pool, so the loop keeps reading other connections meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor

from gateway import metrics
from gateway.exchanges.auditing import RequestContext, current_request
from gateway.mllp.connection import MllpConnection
from gateway.mllp.door import MllpDoor
from gateway.mllp.group_commit import GroupCommit
from gateway.mllp.limits import BufferBudget, MllpLimits
from gateway.mllp.mapping_pool import MappingPool

log = logging.getLogger("epr.mllp")
STOP_SECONDS = 30  # how long a stop waits for the messages being answered


class MllpListener:
    def __init__(self, *, handler, door: MllpDoor, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                 limits: MllpLimits = MllpLimits(), threads: int = 4, reuse_port: bool = False,
                 group_commit: bool = True, mapping_processes: int = 0, checkpointer=None):
        self._handler = handler  # Hl7Channel
        self.door = door
        self.limits = limits
        self.budget = BufferBudget(limits.max_buffered_bytes)
        self.busy_reason = f"MLLP frames held over {limits.max_buffered_bytes} bytes across connections"
        # Documents from all connections share commits (see group_commit); off: one provide each.
        self._group = (GroupCommit(handler.commit_documents, senders=lambda: len(self._connections))
                       if group_commit else None)
        # Documents read and mapped in worker processes (see mapping_pool); 0: in the thread pool.
        self._mapping = (MappingPool(handler.senders, processes=mapping_processes)
                         if mapping_processes and self._group is not None else None)
        self._checkpointer = checkpointer  # SQLite: WAL checkpoints beside the commits (store.wal_checkpoint)
        self._host, self._port = host, port
        self.ssl_context = ssl_context
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mllp")
        self._reuse_port = reuse_port
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[MllpConnection] = set()

    async def start(self) -> tuple[str, int]:
        if self._mapping is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._mapping.start)
        if self._checkpointer is not None:
            self._checkpointer.start()
        self.door.start()
        # TLS is not given to the server: each connection does its handshake (connection.py), so that a
        # failed one is accounted and a slow one timed out.
        self._server = await asyncio.get_running_loop().create_server(
            lambda: MllpConnection(self), self._host, self._port, reuse_port=self._reuse_port or None)
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("MLLP listening on %s:%s%s (at most %d connections)", host, port, " (TLS)" if self.ssl_context else "",
                 self.limits.max_connections)
        return host, port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            answering = [c.worker for c in self._connections if c.worker is not None]
            if answering:  # let the messages being answered finish (their commits are under way)
                await asyncio.wait(answering, timeout=STOP_SECONDS)
            for connection in list(self._connections):
                connection.abort()
            await self._server.wait_closed()
        self._executor.shutdown(wait=True)
        if self._mapping is not None:
            self._mapping.stop()
        if self._group is not None:
            self._group.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()
        await self.door.stop()

    # -- what the connections ask of it ---------------------------------------------------------------
    def admit(self, connection: MllpConnection, address: str | None) -> str | None:
        """None when the connection is taken; else it is closed at once: "" when its address is over its
        refusal limit (counted already), or the refusal's reason (to be accounted)."""
        if self.door.turned_away(address):
            return ""
        if len(self._connections) >= self.limits.max_connections:
            return f"MLLP connection over the limit of {self.limits.max_connections}"
        self._connections.add(connection)
        return None

    def forget(self, connection: MllpConnection) -> None:
        self._connections.discard(connection)

    async def answer(self, raw: bytes, subject: str | None, context: RequestContext) -> bytes:
        metrics.mllp_in_flight(+1)  # the inbox's depth: received, not answered yet
        try:
            ack = await self._answer(raw, subject, context)
        finally:
            metrics.mllp_in_flight(-1)
        metrics.mllp_answered(trigger=_trigger(raw), ack=_ack_code(ack))
        return ack

    async def _answer(self, raw: bytes, subject: str | None, context: RequestContext) -> bytes:
        loop = asyncio.get_running_loop()
        if self._group is None:
            return await loop.run_in_executor(self._executor, self._handle, raw, subject, context)
        self._group.preparing(+1)  # a batch being gathered waits for this one (see group_commit)
        if self._mapping is None:
            answered = loop.create_future()
            try:
                self._executor.submit(self._read_and_submit, raw, subject, context, loop, answered)
            except BaseException:  # the pool is shut down (stopping): this one is not being prepared
                self._group.preparing(-1)
                raise
            return await answered
        try:
            read = await self._mapping.read(loop, raw, subject)
            pending = (self._group.submit(self._handler.pending(read, raw, certificate_subject=subject))
                       if read is not None else None)  # mapped in a worker process (see mapping_pool)
            if pending is None:
                ack = await loop.run_in_executor(self._executor, self._handle, raw, subject, context)
                if isinstance(ack, bytes):
                    return ack
                pending = self._group.submit(ack)  # a document: its ACK comes with its batch's commit
        finally:
            self._group.preparing(-1)
        return await asyncio.wrap_future(pending)

    def _read_and_submit(self, raw: bytes, subject: str | None, context: RequestContext, loop, answered) -> None:
        """In the thread pool: the message read and checked, and a document handed on to the group commit
        from here, so that the loop is woken once, when the ACK is known — not also between the two steps
        (each wake-up is a write to the loop's socket, an epoll round and a GIL handoff)."""
        try:
            try:
                ack = self._handle(raw, subject, context)
                pending = None if isinstance(ack, bytes) else self._group.submit(ack)
            finally:
                self._group.preparing(-1)  # submitted (or answered): the batch need not wait for it
        except BaseException as error:  # the channel answers its own failures: the last guard
            loop.call_soon_threadsafe(_settle, answered, None, error)
            return
        if pending is None:
            loop.call_soon_threadsafe(_settle, answered, ack, None)
            return

        def committed(batch_answer) -> None:  # in the group commit's thread
            error = batch_answer.exception()
            loop.call_soon_threadsafe(_settle, answered, None if error else batch_answer.result(), error)

        pending.add_done_callback(committed)

    def _handle(self, raw: bytes, subject: str | None, context: RequestContext) -> bytes:
        token = current_request.set(context)  # the audit records name the sending address
        try:
            return self._handler.handle(raw, certificate_subject=subject, defer_documents=self._group is not None)
        finally:
            current_request.reset(token)


def _settle(answered: asyncio.Future, ack: bytes | None, error: BaseException | None) -> None:
    if answered.done():  # its connection stopped waiting (closed, listener stopping)
        return
    if error is not None:
        answered.set_exception(error)
    else:
        answered.set_result(ack)


def _trigger(raw: bytes) -> str:
    """MSH-9's message code and trigger event (`MDM^T02`) as sent, for the metrics (which bound it)."""
    header = raw.removeprefix(b"\xef\xbb\xbf").lstrip(b"\r\n").split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not header.startswith(b"MSH") or len(header) < 8:
        return "other"
    fields = header.split(header[3:4])
    components = fields[8].split(header[4:5]) if len(fields) > 8 else []
    return b"^".join(components[:2]).decode("latin-1") if len(components) >= 2 else "other"


def _ack_code(ack: bytes) -> str:
    _, found, rest = ack.partition(b"MSA" + ack[3:4]) if len(ack) > 3 else (b"", b"", b"")
    return rest[:2].decode("latin-1") if found else "other"
