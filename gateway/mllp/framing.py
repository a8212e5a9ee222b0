"""MLLP framing, read incrementally: `0x0B` message `0x1C 0x0D`, bytes fed as they arrive off the socket.

Recovery: bytes before a start block are skipped; a start block inside a frame means the sender gave
up on the earlier frame, so only what follows the last one counts. What was skipped or given up is
reported (`FrameParser.feed` answers it beside the frames), so the door can account for it; blank
bytes between frames (senders that end a frame with `0x1C 0x0D 0x0A`) are not worth a word.

Bounded: a frame is held until its end block, up to `max_frame_bytes`. Past that (reported at once as
`Refused`), or when the door drops it (`refuse`: too much buffered across connections), the frame is
*discarded* up to its end block, keeping only its first bytes (`HEAD_BYTES`: enough for MSH, so that
the refusal can be answered with the message's control id), and reported as `Discarded`, to be
answered, once it ends (a discarded frame its sender abandons is not answered). Reading is linear
in the bytes fed: each byte is searched once, and a frame that arrives whole in one read is sliced
out of it without being gathered first.
"""

from __future__ import annotations

from dataclasses import dataclass

START = b"\x0b"
END = b"\x1c\x0d"
HEAD_BYTES = 4096
_BLANK = b" \t\r\n\x0c\x00"
STRAY_BYTES = "bytes outside an MLLP frame (before its start block)"
ABANDONED = "MLLP frame abandoned: a new start block before its end block"


def frame(message: bytes) -> bytes:
    return START + message + END


@dataclass(frozen=True)
class Frame:
    """A whole message (without its framing)."""

    body: bytes


@dataclass(frozen=True)
class Discarded:
    """A frame read to its end block and thrown away, to be answered: its first bytes and why."""

    head: bytes
    reason: str


@dataclass(frozen=True)
class Refused:
    """The frame being read is too large: from here on it is discarded (to be accounted at once)."""

    reason: str


@dataclass(frozen=True)
class Skipped:
    """Bytes that made no frame to answer (stray bytes, an abandoned frame), and why."""

    reason: str


class FrameParser:
    def __init__(self, *, max_frame_bytes: int):
        self.max_frame_bytes = max_frame_bytes
        self._frame: bytearray | None = None  # what is held of the frame being read; None between frames
        self._discarding: str | None = None  # why, while a refused frame is read to its end block
        self._head = b""  # a discarded frame's first bytes
        self._stray_reported = False  # one report per run of stray bytes

    @property
    def in_frame(self) -> bool:
        return self._frame is not None

    @property
    def buffered(self) -> int:
        """Bytes held for the frame being read (what the door counts against its budget)."""
        return len(self._frame) if self._frame is not None else 0

    def refuse(self, reason: str) -> None:
        """Stop holding the frame being read: it is discarded to its end block, then reported."""
        if self._frame is not None and self._discarding is None:
            self._discard(reason)

    def feed(self, data: bytes) -> list[Frame | Refused | Discarded | Skipped]:
        events: list[Frame | Refused | Discarded | Skipped] = []
        at, size = 0, len(data)
        while at < size:
            if self._frame is None:
                start = data.find(START, at)
                self._stray(data[at:size if start < 0 else start], events)
                if start < 0:
                    break
                self._frame = bytearray()
                self._stray_reported = False
                at = start + 1
            else:
                at = self._read_frame(data, at, events)
        return events

    def _read_frame(self, data: bytes, at: int, events: list) -> int:
        """Take data[at:] into the frame being read; where the first byte not taken is."""
        held = self._frame
        if held and held[-1] == END[0] and data[at] == END[1]:  # the end block straddles two reads
            return self._ended(held[:-1], at + 1, events)
        end = data.find(END, at)
        restart = data.rfind(START, at, end if end >= 0 else len(data))
        if restart >= 0:  # the sender gave up on this frame: a new one starts after the last start block
            if self._discarding is None:  # a discarded one was accounted when it was refused
                events.append(Skipped(ABANDONED))
            self._reset()
            self._frame = bytearray()
            return restart + 1
        if end < 0:
            if self._discarding is not None:
                self._frame = bytearray(data[-1:])  # only a 0x1C that may begin the end block
            else:
                held += memoryview(data)[at:]
                if len(held) > self.max_frame_bytes:
                    self._discard(self._too_large())
                    events.append(Refused(self._discarding))
            return len(data)
        if held:
            held += memoryview(data)[at:end]
            return self._ended(held, end + len(END), events)
        return self._ended(data[at:end], end + len(END), events)  # arrived whole: sliced once

    def _ended(self, body, after: int, events: list) -> int:
        if self._discarding is not None:
            events.append(Discarded(self._head, self._discarding))
        elif len(body) > self.max_frame_bytes:
            events += [Refused(self._too_large()), Discarded(bytes(body[:HEAD_BYTES]), self._too_large())]
        else:
            events.append(Frame(bytes(body)))
        self._reset()
        return after

    def _stray(self, stray: bytes, events: list) -> None:
        if stray and not self._stray_reported and stray.strip(_BLANK):
            events.append(Skipped(STRAY_BYTES))
            self._stray_reported = True

    def _discard(self, reason: str) -> None:
        self._head = bytes(self._frame[:HEAD_BYTES])
        self._discarding = reason
        self._frame = bytearray(self._frame[-1:])  # only a 0x1C that may begin the end block

    def _too_large(self) -> str:
        return f"MLLP frame over {self.max_frame_bytes} bytes"

    def _reset(self) -> None:
        self._frame = None
        self._discarding = None
        self._head = b""
