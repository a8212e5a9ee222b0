"""One MLLP connection as an asyncio Protocol: the bytes are counted as they arrive, so every limit holds
whatever the peer sends (`limits.py`), and each refusal is accounted by the door (`door.py`).

The life of a connection: admitted (or refused over the connection limit, or turned away when its
address is over its refusal limit); TLS when configured, the handshake done here so that a failed one
is seen and accounted (`loop.start_tls`, within the read timeout); then frames, one at a time as MLLP's
original mode has it: a peer that sends on while a message is answered is not read until its ACK is
written (TCP pushes back on the sender). Between frames the idle timeout runs; from a start block to
its end block the read timeout. Bytes held (the frame being read, the frames being answered) count
against the listener's budget: the frame that would pass it is refused (AR, "send it again later")
and read to its end unheld.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import ssl

from gateway.exchanges.auditing import RequestContext
from gateway.mllp.door import refusal_ack
from gateway.mllp.framing import Discarded, Frame, FrameParser, Refused, Skipped, frame

log = logging.getLogger("epr.mllp")
CUT_SHORT = "MLLP frame cut short: the connection closed before its end block"


def certificate_subject(transport: asyncio.BaseTransport) -> str | None:
    """The verified client certificate's CN (the TLS layer has checked it against EPR_CLIENT_CA)."""
    ssl_object = transport.get_extra_info("ssl_object")
    certificate = ssl_object.getpeercert() if ssl_object is not None else None
    if not certificate:
        return None
    return next((v for rdn in certificate.get("subject", ()) for k, v in rdn if k == "commonName"), None)


class MllpConnection(asyncio.Protocol):
    def __init__(self, listener):
        self._listener = listener  # MllpListener: limits, budget, door, answer, the open connections
        self._limits = listener.limits
        self._parser = FrameParser(max_frame_bytes=self._limits.max_frame_bytes)
        self._transport: asyncio.Transport | None = None
        self._address: str | None = None
        self._context = RequestContext()
        self._subject: str | None = None
        self._waiting: collections.deque[Frame | Discarded] = collections.deque()  # to be answered, in order
        self._waiting_bytes = 0
        self._held = 0  # bytes counted against the listener's budget
        self._handshake_task: asyncio.Task | None = None
        self._worker: asyncio.Task | None = None  # answering the waiting frames
        self._timer: asyncio.TimerHandle | None = None
        self._timing: str | None = None  # "idle" or "read": which timeout `_timer` is
        self._writable: asyncio.Future | None = None  # set while the transport's write buffer is full
        self._reading_paused = False  # while a peer sending on is answered
        self._eof = False  # the peer has sent all it will (its ACKs may still be owed)
        self._closed = False

    # -- asyncio.Protocol ---------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._address = peer[0] if peer else None
        self._context = RequestContext(client_address=self._address)
        refusal = self._listener.admit(self, self._address)
        if refusal is not None:
            self._closed = True
            if refusal:
                self._listener.door.refuse(self._address, refusal)
            transport.abort()
            return
        if self._listener.ssl_context is not None:
            transport.pause_reading()  # nothing is read before the handshake (start_tls resumes)
            self._handshake_task = asyncio.get_running_loop().create_task(self._handshake())
        else:
            self._time("idle")

    def data_received(self, data: bytes) -> None:
        if self._closed:
            return
        events = self._parser.feed(data)
        for event in events:
            if isinstance(event, (Skipped, Refused)):
                self._listener.door.refuse(self._address, event.reason)
            else:
                self._waiting.append(event)
                if isinstance(event, Frame):
                    self._waiting_bytes += len(event.body)
        self._count_held()
        if self._worker is not None:
            # The peer sends on while its last message is answered (senders wait for their ACK, so this is
            # rare): not read until then, so that TCP pushes back instead of frames piling up here.
            if not self._reading_paused:
                self._transport.pause_reading()
                self._reading_paused = True
        elif self._waiting:
            self._time(None)
            self._worker = asyncio.get_running_loop().create_task(self._answer_waiting())
        elif self._parser.in_frame and self._timing != "read":
            self._time("read")  # a frame started: it must end within the read timeout

    def eof_received(self) -> bool:
        """A peer that half-closes after its last frame still gets its ACKs (kept open while owed)."""
        self._eof = True
        return self._worker is not None

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._closed and self._parser.in_frame:
            self._listener.door.refuse(self._address, CUT_SHORT)
        self._finish()

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    # -- the connection's work ------------------------------------------------------------------------
    async def _handshake(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self._transport = await loop.start_tls(self._transport, self, self._listener.ssl_context,
                                                   server_side=True,
                                                   ssl_handshake_timeout=self._limits.read_timeout_seconds)
        except ssl.SSLError as error:  # no or unknown client certificate, not TLS at all, ...
            self._refuse_and_close(f"TLS handshake refused: {error.reason or type(error).__name__}")
            return
        except ConnectionAbortedError:  # start_tls's handshake timeout
            self._refuse_and_close(f"TLS handshake not complete within {self._limits.read_timeout_seconds:g} s")
            return
        except (OSError, asyncio.CancelledError):  # the peer left before a word: nothing refused
            self._finish()
            return
        finally:
            self._handshake_task = None
        self._subject = certificate_subject(self._transport)
        self._time("idle")

    async def _answer_waiting(self) -> None:
        try:
            while self._waiting and not self._closed:
                event = self._waiting[0]
                if isinstance(event, Frame):
                    ack = await self._listener.answer(event.body, self._subject, self._context)
                else:  # refused unread, accounted when refused: answered now that its sender waits
                    ack = refusal_ack(event.head, event.reason, later=event.reason == self._listener.busy_reason)
                self._waiting.popleft()
                if isinstance(event, Frame):
                    self._waiting_bytes -= len(event.body)
                    self._count_held()
                if self._closed:
                    return
                self._transport.write(frame(ack))
                if self._writable is not None and not await self._written():
                    return
        except Exception:  # the use-case answers its own failures: this is the last guard
            log.exception("MLLP connection from %s failed", self._address)
            self._close()
            return
        finally:
            self._worker = None
        if self._eof:
            self._close(graceful=True)  # its ACKs written: flushed, then closed
        elif not self._closed:
            self._time("read" if self._parser.in_frame else "idle")
            if self._reading_paused:
                self._reading_paused = False
                self._transport.resume_reading()

    async def _written(self) -> bool:
        """Wait for a full write buffer to drain; a peer that does not take its ACKs is let go."""
        try:
            await asyncio.wait_for(asyncio.shield(self._writable), self._limits.read_timeout_seconds)
            return True
        except asyncio.TimeoutError:
            self._refuse_and_close(f"ACK not taken within {self._limits.read_timeout_seconds:g} s")
            return False

    # -- limits ---------------------------------------------------------------------------------------
    def _count_held(self) -> None:
        """Bring this connection's share of the budget up to date; the frame being read that would pass
        the budget is refused (read to its end unheld, answered AR)."""
        if self._closed:
            return  # its share was given back when it closed
        held = self._parser.buffered + self._waiting_bytes
        budget = self._listener.budget
        if held > self._held and self._parser.buffered and not budget.fits(held - self._held):
            self._listener.door.refuse(self._address, self._listener.busy_reason)
            self._parser.refuse(self._listener.busy_reason)
            held = self._parser.buffered + self._waiting_bytes
        budget.change(held - self._held)
        self._held = held

    def _time(self, kind: str | None) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._timing = kind
        if kind is not None:
            seconds = self._limits.read_timeout_seconds if kind == "read" else self._limits.idle_timeout_seconds
            self._timer = asyncio.get_running_loop().call_later(seconds, self._timed_out, kind)

    def _timed_out(self, kind: str) -> None:
        self._timer = None
        if kind == "read":
            self._refuse_and_close(f"MLLP frame not complete within {self._limits.read_timeout_seconds:g} s")
        else:
            log.info("MLLP connection from %s idle for %g s: closed", self._address, self._limits.idle_timeout_seconds)
            self._close()

    def _refuse_and_close(self, reason: str) -> None:
        if not self._closed:
            self._listener.door.refuse(self._address, reason)
        self._close()

    def _close(self, *, graceful: bool = False) -> None:
        """Closed by the gateway (a timeout, a refusal, the listener stopping, the peer's EOF answered)."""
        if self._transport is not None and not self._closed:
            self._closed = True
            if graceful:
                self._transport.close()
            else:
                self._transport.abort()
        self._finish()

    def abort(self) -> None:
        self._close()

    def _finish(self) -> None:
        """Whoever closed it: the timer stopped, its bytes given back, the listener told (once)."""
        self._closed = True
        self._time(None)
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)  # a worker waiting to write sees the connection closed
        if self._held:
            self._listener.budget.change(-self._held)
            self._held = 0
        self._listener.forget(self)

    @property
    def worker(self) -> asyncio.Task | None:
        """The task answering this connection's messages, if one is under way (a stop waits for it)."""
        return self._worker
