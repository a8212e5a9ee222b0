"""Original-mode acknowledgements: MSA-1 AA / AE / AR, MSA-2 = the message's MSH-10, and for AE/AR an
ERR segment (ERR-2 location, ERR-3 HL7 error code from table 0357, ERR-4 severity, ERR-8 the text
for the sender). The ACK is written in the character set the message came in."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from adapters.infomed.hl7v2.errors import ERROR_TEXT, MessageError
from adapters.infomed.hl7v2.message import Message

RECEIVING_APPLICATION = "EPR-GATEWAY"
MAX_TEXT = 400


def escape(value: str) -> str:
    """HL7 escapes for text we write (the default delimiters are used in every ACK)."""
    return (value.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\").replace("&", "\\T\\")
            .replace("~", "\\R\\").replace("\r", " ").replace("\n", "\\.br\\"))


def build_ack(message: Message | None, code: str, *, text: str = "", error: MessageError | None = None,
              warning: bool = False, receiving_facility: str = "EPR") -> bytes:
    """The ACK bytes (without MLLP framing). `message` None: the message could not be read at all."""
    now = datetime.now(UTC).strftime("%Y%m%d%H%M%S+0000")
    msh = message.msh if message is not None else None
    trigger = message.message_type[1] if message is not None else ""
    version = (message.version if message is not None else "") or "2.5"
    charset_field = msh.raw(18) if msh is not None else ""
    their_app = msh.raw(3) if msh is not None else ""
    their_facility = msh.raw(4) if msh is not None else ""
    control_id = escape(message.control_id) if message is not None else ""
    header = ["MSH", "^~\\&", RECEIVING_APPLICATION, receiving_facility, their_app, their_facility, now, "",
              f"ACK^{trigger}^ACK" if trigger else "ACK", uuid.uuid4().hex[:20], "P", version,
              "", "", "", "", "", charset_field]
    segments = ["|".join(header).rstrip("|"), "|".join(["MSA", code, control_id, escape(text[:MAX_TEXT])]).rstrip("|")]
    if error is not None:
        name = ERROR_TEXT.get(error.code, "")
        # ERR-1 (v2.3/v2.4 senders read only this one; kept for them in v2.5+), then ERR-2..8 (v2.5+).
        legacy = "^".join([error.segment or "", str(error.sequence) if error.segment else "", str(error.field or ""),
                           f"{error.code}&{name}&HL70357"])  # ELD: segment ^ sequence ^ field ^ code
        segments.append("|".join(["ERR", legacy, error.location, f"{error.code}^{name}^HL70357",
                                  "W" if warning else "E", "", "", "", escape(error.text[:MAX_TEXT])]))
    codec = (message.charset if message is not None else "") or "utf-8"
    return ("\r".join(segments) + "\r").encode(codec, errors="replace")
