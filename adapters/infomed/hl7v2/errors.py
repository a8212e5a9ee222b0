"""What is wrong with a message, in HL7 terms: the ACK code, the HL7 error code (table 0357) and the
location (segment, field, component), so the ACK's ERR segment names what the sender must fix."""

from __future__ import annotations

# HL7 table 0357 (message error condition codes)
SEGMENT_SEQUENCE = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION = "203"
UNKNOWN_KEY = "204"
DUPLICATE_KEY = "205"
APPLICATION_RECORD_LOCKED = "206"
APPLICATION_ERROR = "207"

ERROR_TEXT = {
    SEGMENT_SEQUENCE: "Segment sequence error", REQUIRED_FIELD_MISSING: "Required field missing",
    DATA_TYPE_ERROR: "Data type error", TABLE_VALUE_NOT_FOUND: "Table value not found",
    UNSUPPORTED_MESSAGE_TYPE: "Unsupported message type", UNSUPPORTED_EVENT: "Unsupported event code",
    UNSUPPORTED_PROCESSING_ID: "Unsupported processing id", UNSUPPORTED_VERSION: "Unsupported version id",
    UNKNOWN_KEY: "Unknown key identifier", DUPLICATE_KEY: "Duplicate key identifier",
    APPLICATION_RECORD_LOCKED: "Application record locked", APPLICATION_ERROR: "Application internal error",
}


class MessageError(Exception):
    """A message the gateway answers AE (`sender_must_fix`) or AR. `location` is `SEG^seq^field^component`
    as HL7 v2.5+ ERR-2 (ERL) wants it, e.g. ("TXA", 1, 12, None)."""

    ack_code = "AE"
    status = 400  # a refusal of the sender's message (audited as such), not a failure of the gateway

    def __init__(self, text: str, *, code: str, segment: str | None = None, field: int | None = None,
                 component: int | None = None, sequence: int = 1):
        super().__init__(text)
        self.text = text
        self.message = text  # what the audit record's outcome description shows
        self.code = code
        self.segment = segment
        self.field = field
        self.component = component
        self.sequence = sequence

    @property
    def location(self) -> str:
        if not self.segment:
            return ""
        parts = [self.segment, str(self.sequence), str(self.field or ""), str(self.component or "")]
        return "^".join(parts).rstrip("^")


class SenderMustFix(MessageError):
    """AE: the message is understood but something in it must be corrected (and re-sent)."""

    ack_code = "AE"


class CannotProcess(MessageError):
    """AR: the gateway cannot process this message at all (type, structure, sender)."""

    ack_code = "AR"
