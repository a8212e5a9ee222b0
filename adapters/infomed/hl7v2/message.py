"""A focused HL7 v2 tokenizer: segments, fields, repetitions, components, as the mapping needs them.

Why not hl7apy on this path: its parse of one document message costs tens of milliseconds (bench/README.md),
which alone would cap two cores far below the 500 messages/s target; the mapping reads a dozen fields. hl7apy
stays the reference parser (`structures.py`), used to check that what we read is what it reads.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from adapters.infomed.hl7v2.errors import (
    DATA_TYPE_ERROR,
    REQUIRED_FIELD_MISSING,
    SEGMENT_SEQUENCE,
    CannotProcess,
    SenderMustFix,
)
from adapters.infomed.hl7v2.escapes import UndecodableEscape, unescape
from adapters.infomed.hl7v2.normalise import WINDOWS_1252, decode_keeping_utf8


@dataclass(frozen=True)
class Delimiters:
    field: str = "|"
    component: str = "^"
    repetition: str = "~"
    escape: str = "\\"
    subcomponent: str = "&"


class Segment:
    """One segment, as a span of the message's text. Its fields are found once, when one is first read
    (`str.find`, which scans at memory speed, where `str.split` compares character by character), and
    each value is sliced out of the text when it is read: the OBX carrying a 50 KB document is not
    copied for the segment, then for the field, then for the repetition before its data component
    (read with `components`) is sliced once."""

    __slots__ = ("name", "_message", "_start", "_end", "_ends", "_repetitions")

    def __init__(self, message: "Message", start: int, end: int):
        self._message = message
        self._start = start
        self._end = end
        self.name = message.text[start:min(start + 3, end)]
        self._ends: list[int] | None = None
        self._repetitions: dict[int, list[str]] | None = None

    def _field_ends(self) -> list[int]:
        """Where each field ends, numbered as splitting the segment on the field separator would
        (0: the segment's name)."""
        if self._ends is None:
            text, separator, end = self._message.text, self._message.delimiters.field, self._end
            ends = []
            at = text.find(separator, self._start, end)
            while at >= 0:
                ends.append(at)
                at = text.find(separator, at + 1, end)
            ends.append(end)
            self._ends = ends
        return self._ends

    def _span(self, number: int) -> tuple[int, int]:
        index = number - 1 if self.name == "MSH" else number
        ends = self._field_ends()
        if index >= len(ends):
            return self._end, self._end
        return (self._start if index == 0 else ends[index - 1] + 1), ends[index]

    def raw(self, number: int) -> str:
        """Field `number` as sent (escapes not decoded). MSH-1 is the field separator itself."""
        if self.name == "MSH" and number == 1:
            return self._message.delimiters.field
        start, end = self._span(number)
        return self._message.text[start:end]

    def components(self, number: int) -> list[str]:
        """The components of the first repetition of field `number`, as sent (escapes not decoded),
        each sliced out of the message's text once: how a large field (OBX-5 with a document) is read."""
        if self.name == "MSH" and number == 1:
            return [self._message.delimiters.field]
        text, delimiters = self._message.text, self._message.delimiters
        start, end = self._span(number)
        repetition_end = text.find(delimiters.repetition, start, end)
        end = end if repetition_end < 0 else repetition_end
        parts = []
        at = text.find(delimiters.component, start, end)
        while at >= 0:
            parts.append(text[start:at])
            start = at + 1
            at = text.find(delimiters.component, start, end)
        parts.append(text[start:end])
        return parts

    def repetitions(self, number: int) -> list[str]:
        return list(self._split_repetitions(number))

    def _split_repetitions(self, number: int) -> list[str]:
        """Field `number` split into its repetitions once, then remembered: reading repetition i of n
        (`component(..., repetition=i)` for each i, as a CX list is read) costs the field's length
        once, not n times (an A08 with 10,000 PID-3 repetitions took 33 s of CPU that way)."""
        if self._repetitions is None:
            self._repetitions = {}
        reps = self._repetitions.get(number)
        if reps is None:
            reps = self._repetitions[number] = self.raw(number).split(self._message.delimiters.repetition)
        return reps

    def component(self, number: int, component: int = 1, *, repetition: int = 0, subcomponent: int | None = None) -> str:
        """One decoded value: field `number`, its `component` (1-based), optionally a subcomponent."""
        reps = self._split_repetitions(number)
        if repetition >= len(reps):
            return ""
        return self._message.split_value(reps[repetition], component, subcomponent, where=(self.name, number))

    def value(self, number: int) -> str:
        """The first component of the first repetition, decoded (the usual 'the field's value')."""
        return self.component(number, 1)


class Message:
    def __init__(self, text: str, charset: str, utf8: bytes | None = None):
        self.text = text
        self.charset = charset
        self.utf8 = utf8  # the text's UTF-8 when it was read from it (see normalise.decode_keeping_utf8)
        if not text.startswith("MSH") or len(text) < 8:
            raise CannotProcess("not an HL7 v2 message: it does not start with an MSH segment",
                                code=SEGMENT_SEQUENCE, segment="MSH")
        encoding = text[4:8]
        self.delimiters = Delimiters(text[3], encoding[0], encoding[1], encoding[2],
                                     encoding[3] if len(encoding) > 3 and encoding[3] != text[3] else "&")
        self.segments: list[Segment] = []
        start, size = 0, len(text)
        while start < size:  # as `[line for line in text.split("\r") if line]`, without copying the lines
            end = text.find("\r", start)
            end = size if end < 0 else end
            if end > start:
                self.segments.append(Segment(self, start, end))
            start = end + 1

    @classmethod
    def parse(cls, raw: bytes) -> "Message":
        return cls(*decode_keeping_utf8(raw))

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    def first(self, name: str) -> Segment | None:
        return next((s for s in self.segments if s.name == name), None)

    def all(self, name: str) -> list[Segment]:
        return [s for s in self.segments if s.name == name]

    def require(self, name: str) -> Segment:
        segment = self.first(name)
        if segment is None:
            raise SenderMustFix(f"the message has no {name} segment", code=REQUIRED_FIELD_MISSING, segment=name)
        return segment

    def split_value(self, repetition: str, component: int, subcomponent: int | None = None, *,
                    where: tuple[str, int] | None = None) -> str:
        d = self.delimiters
        parts = repetition.split(d.component)
        value = parts[component - 1] if component - 1 < len(parts) else ""
        if subcomponent is not None:
            subs = value.split(d.subcomponent)
            value = subs[subcomponent - 1] if subcomponent - 1 < len(subs) else ""
        return self.unescape(value, where=where)

    def unescape(self, value: str, *, where: tuple[str, int] | None = None) -> str:
        """`value` with its escapes decoded; `where` (segment, field) names it when an escape is no text."""
        d = self.delimiters
        if d.escape not in value:  # the usual value: nothing to decode
            return value
        try:
            return unescape(value, field=d.field, component=d.component, repetition=d.repetition, escape=d.escape,
                            subcomponent=d.subcomponent, charset=self.charset or "utf-8",
                            fallback=self._escape_fallback)
        except UndecodableEscape as undecodable:
            segment, field = where or (None, None)
            at = f" ({segment}-{field})" if segment else ""
            raise SenderMustFix(f"{undecodable}{at}: send the text in the character set MSH-18 names",
                                code=DATA_TYPE_ERROR, segment=segment, field=field) from None

    @functools.cached_property
    def _escape_fallback(self) -> str | None:
        """Escaped bytes are read as raw ones are (normalise.decode): without MSH-18, windows-1252 when
        they are not UTF-8. Once per message (a text document's every line may carry escapes)."""
        return WINDOWS_1252 if (self.charset or "utf-8") == "utf-8" and not self.msh.raw(18).strip() else None

    # -- the header ------------------------------------------------------------------------------
    @property
    def control_id(self) -> str:
        return self.msh.value(10)

    @property
    def message_type(self) -> tuple[str, str, str]:
        """(MSH-9.1, MSH-9.2, MSH-9.3): code, trigger, structure as sent."""
        msh = self.msh
        return msh.component(9, 1), msh.component(9, 2), msh.component(9, 3)

    @property
    def version(self) -> str:
        return self.msh.value(12)
