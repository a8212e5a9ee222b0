"""The MLLP listener on asyncio streams: many persistent connections, one message at a time on each
(original mode: the sender waits for its ACK), TLS with client certificates when configured.

Each message is handed to the use-case (`Hl7Exchange.handle`, blocking: store and ledger) in a thread
pool, so the loop keeps reading other connections meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from concurrent.futures import ThreadPoolExecutor

from gateway.exchanges.auditing import RequestContext, current_request
from gateway.mllp.framing import FrameTooLarge, frame, read_frame
from gateway.mllp.group_commit import GroupCommit
from gateway.mllp.mapping_pool import MappingPool

log = logging.getLogger("epr.mllp")
MAX_FRAME_BYTES = 32 * 1024 * 1024


def certificate_subject(writer: asyncio.StreamWriter) -> str | None:
    """The verified client certificate's CN (the TLS layer has checked it against EPR_CLIENT_CA)."""
    ssl_object = writer.get_extra_info("ssl_object")
    certificate = ssl_object.getpeercert() if ssl_object is not None else None
    if not certificate:
        return None
    return next((v for rdn in certificate.get("subject", ()) for k, v in rdn if k == "commonName"), None)


class MllpListener:
    def __init__(self, *, handler, host: str, port: int, ssl_context: ssl.SSLContext | None = None,
                 threads: int = 4, max_frame_bytes: int = MAX_FRAME_BYTES, reuse_port: bool = False,
                 group_commit: bool = True, mapping_processes: int = 0, checkpointer=None):
        self._handler = handler  # Hl7Exchange
        # Documents from all connections share commits (see group_commit); off: one provide each.
        self._group = (GroupCommit(handler.commit_documents, senders=lambda: len(self._connections))
                       if group_commit else None)
        # Documents read and mapped in worker processes (see mapping_pool); 0: in the thread pool.
        self._mapping = (MappingPool(handler.senders, processes=mapping_processes)
                         if mapping_processes and self._group is not None else None)
        self._checkpointer = checkpointer  # SQLite: WAL checkpoints beside the commits (store.wal_checkpoint)
        self._host, self._port = host, port
        self._ssl = ssl_context
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="mllp")
        self._max_frame_bytes = max_frame_bytes
        self._reuse_port = reuse_port
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> tuple[str, int]:
        if self._mapping is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._mapping.start)
        if self._checkpointer is not None:
            self._checkpointer.start()
        self._server = await asyncio.start_server(self._connection, self._host, self._port, ssl=self._ssl,
                                                  limit=self._max_frame_bytes, reuse_port=self._reuse_port or None)
        host, port = self._server.sockets[0].getsockname()[:2]
        log.info("MLLP listening on %s:%s%s", host, port, " (TLS)" if self._ssl else "")
        return host, port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            for task in list(self._connections):
                task.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)
            await self._server.wait_closed()
        self._executor.shutdown(wait=True)
        if self._mapping is not None:
            self._mapping.stop()
        if self._group is not None:
            self._group.stop()
        if self._checkpointer is not None:
            self._checkpointer.stop()

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        peer = writer.get_extra_info("peername")
        subject = certificate_subject(writer)
        context = RequestContext(client_address=peer[0] if peer else None)
        try:
            while True:
                try:
                    raw = await read_frame(reader)
                except FrameTooLarge:
                    log.warning("MLLP frame from %s over %d bytes: connection closed", peer, self._max_frame_bytes)
                    break
                if raw is None:
                    break
                ack = await self._answer(raw, subject, context)
                writer.write(frame(ack))
                await writer.drain()
        except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionError, ssl.SSLError, asyncio.CancelledError):
                pass

    async def _answer(self, raw: bytes, subject: str | None, context: RequestContext) -> bytes:
        loop = asyncio.get_running_loop()
        if self._group is None:
            return await loop.run_in_executor(self._executor, self._handle, raw, subject, context)
        self._group.preparing(+1)  # a batch being gathered waits for this one (see group_commit)
        try:
            read = await self._mapping.read(loop, raw, subject) if self._mapping is not None else None
            if read is not None:  # mapped in a worker process (see mapping_pool)
                pending = self._group.submit(self._handler.pending(read, raw, certificate_subject=subject))
            else:
                ack = await loop.run_in_executor(self._executor, self._handle, raw, subject, context)
                if isinstance(ack, bytes):
                    return ack
                pending = self._group.submit(ack)  # a document: its ACK comes with its batch's commit
        finally:
            self._group.preparing(-1)
        return await asyncio.wrap_future(pending)

    def _handle(self, raw: bytes, subject: str | None, context: RequestContext) -> bytes:
        token = current_request.set(context)  # the audit records name the sending address
        try:
            return self._handler.handle(raw, certificate_subject=subject, defer_documents=self._group is not None)
        finally:
            current_request.reset(token)
