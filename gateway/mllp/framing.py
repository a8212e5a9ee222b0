"""MLLP framing on an asyncio stream: `0x0B` message `0x1C 0x0D`.

Recovery: bytes before a start block are skipped; a start block inside a frame means the sender gave
up on the earlier frame, so only what follows the last one counts. A connection closed mid-frame
yields nothing (nothing is stored, nothing acknowledged). Reading is linear in the frame's size
(`StreamReader.readuntil` resumes its search), so messages of several MB cost what their bytes cost.
"""

from __future__ import annotations

import asyncio

START = b"\x0b"
END = b"\x1c\x0d"


class FrameTooLarge(Exception):
    pass


async def read_frame(reader: asyncio.StreamReader) -> bytes | None:
    """The next message, or None when the peer closed (between frames or mid-frame). The reader's
    `limit` is the largest frame accepted (FrameTooLarge beyond it)."""
    while True:  # skip anything up to a start block
        try:
            await reader.readuntil(START)
            break
        except asyncio.IncompleteReadError:
            return None
        except asyncio.LimitOverrunError as overrun:
            await reader.readexactly(overrun.consumed)  # garbage longer than a frame: drop it, go on
    try:
        frame = await reader.readuntil(END)
    except asyncio.IncompleteReadError:
        return None
    except asyncio.LimitOverrunError:
        raise FrameTooLarge("MLLP frame larger than the configured limit") from None
    body = frame[:-len(END)]
    restart = body.rfind(START)
    return body[restart + 1:] if restart >= 0 else body


def frame(message: bytes) -> bytes:
    return START + message + END
