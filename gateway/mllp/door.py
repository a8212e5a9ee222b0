"""What the MLLP door refuses before a message reaches the use-case, accounted like the FHIR face's
refused authentications (`gateway/exchanges/refusal_windows.py`): per client address, the first refusal
of a window is recorded at once (and logged), the rest counted into one summary record when the window
closes; an address over its limit has its new connections closed at once (counted too).

Refused here: a frame over the size limit, a frame refused because too much is held across connections,
a frame not complete in time, a frame abandoned or cut short, bytes outside frames, a connection over the
connection limit, a failed TLS handshake (no or unknown client certificate, not TLS), an ACK the peer
does not take. An unknown sender is refused by the use-case, counted in the same windows.
"""

from __future__ import annotations

import asyncio
import logging

from adapters.infomed.hl7v2.errors import APPLICATION_ERROR, CannotProcess, MessageError, SenderMustFix
from adapters.infomed.hl7v2.message import Message
from gateway.exchanges.auditing import RequestContext, current_request
from gateway.exchanges.message_outcomes import Refused
from gateway.exchanges.refusal_windows import RefusalFlusher, RefusalWindows
from gateway.mllp import acks

log = logging.getLogger("epr.mllp")
TRANSACTION = "HL7v2"
TURNED_AWAY = "connection closed at once: the address is over its refusal limit"


def refusal_windows(settings) -> RefusalWindows:
    """The MLLP face's table: the same interval, limit and address bound as the HTTP face's."""
    return RefusalWindows(interval_seconds=settings.auth_failure_interval_seconds, limit=settings.auth_failure_limit,
                          max_sources=settings.auth_failure_sources, transaction=TRANSACTION,
                          what="refusals at the MLLP door", turned_away=TURNED_AWAY)


class DoorRefused(Exception):
    """A refusal at the door, as the audit record describes it (a client's fault: outcome 4)."""

    status = 400

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class MllpDoor:
    def __init__(self, *, windows: RefusalWindows, auditor):
        self.windows = windows
        self._auditor = auditor
        self._flusher = RefusalFlusher(windows, auditor)
        self._writing: set[asyncio.Future] = set()

    def start(self) -> None:
        self._flusher.start()

    async def stop(self) -> None:
        if self._writing:
            await asyncio.gather(*self._writing, return_exceptions=True)
        await self._flusher.stop()  # every counted refusal reaches the ledger before the stop

    def turned_away(self, address: str | None) -> bool:
        """True when `address` is over its limit: its connection is closed unread (and counted)."""
        return self.windows.retry_after(address) is not None

    def refuse(self, address: str | None, reason: str) -> None:
        """Account one refusal: recorded now when it opens its address's window (in a thread: the
        ledger's commit blocks), else counted for the window's summary."""
        if not self.windows.refused(address, reason):
            return
        log.warning("MLLP refused from %s: %s (further refusals from it counted for %.0f s)", address, reason,
                    self.windows.interval)
        writing = asyncio.get_running_loop().run_in_executor(None, self._record, address, reason)
        self._writing.add(writing)
        writing.add_done_callback(self._writing.discard)

    def _record(self, address: str | None, reason: str) -> None:
        token = current_request.set(RequestContext(client_address=address))
        try:
            self._auditor.failure(TRANSACTION, None, DoorRefused(reason))
        except Exception:  # the ledger is down: the refusal stands (fail closed), the log says so
            log.exception("MLLP refusal from %s could not be recorded: %s", address, reason)
        finally:
            current_request.reset(token)


def refusal_ack(head: bytes, reason: str, *, later: bool) -> bytes:
    """The answer to a frame refused unread: AR "send it again later" when the gateway is too busy
    (`later`), else AE (the message cannot be taken as it is). It names the message's MSH-10 when the
    frame's first bytes hold a readable MSH."""
    error: MessageError = (CannotProcess(f"{reason}: send it again later", code=APPLICATION_ERROR) if later
                           else SenderMustFix(f"{reason}: the gateway does not take it", code=APPLICATION_ERROR))
    return acks.answer(_header(head), Refused(error)).ack


def _header(head: bytes) -> Message | None:
    first_line = head.replace(b"\n", b"\r").split(b"\r", 1)[0]
    try:
        return Message.parse(first_line)
    except MessageError:
        return None
