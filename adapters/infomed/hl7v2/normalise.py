"""Bytes off the wire → one text with `\\r` between segments, decoded in the message's character set.

The wild sends `\\n` or `\\r\\n`, a UTF-8 byte-order mark, and ISO-8859-1 with or without MSH-18.
MSH-18 is read from the raw bytes (its name is ASCII in every charset we accept) before decoding.
"""

from __future__ import annotations

from adapters.infomed.hl7v2.errors import UNSUPPORTED_VERSION, CannotProcess

BOM = b"\xef\xbb\xbf"
# MSH-18 values (HL7 table 0211) → Python codec. Empty or ASCII: UTF-8 if it decodes, else ISO-8859-1.
CHARSETS = {
    "": None, "ASCII": None,
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8",
    "8859/1": "iso-8859-1", "8859/15": "iso-8859-15", "ISO-8859-1": "iso-8859-1", "LATIN1": "iso-8859-1",
}


_WHITESPACE = frozenset(b" \t\n\r\x0b\x0c")  # what bytes.strip() strips


def normalise_bytes(raw: bytes) -> bytes:
    """BOM dropped, every line end a `\\r`, no empty (or blank) segments; still bytes (charset not yet
    known). The segments are found by their separators and only the blank ones are cut out: a message
    whose segments are all there (the usual one) costs one slice, not a copy of each segment (the
    OBX of a 50 KB document among them) by split, strip and join."""
    if raw.startswith(BOM):
        raw = raw[len(BOM):]
    if b"\n" in raw:
        raw = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r")
    kept: list[tuple[int, int]] = []  # (start, end) of each non-blank segment
    start, size = 0, len(raw)
    while start <= size:
        end = raw.find(b"\r", start)
        end = size if end < 0 else end
        if end > start and (raw[start] not in _WHITESPACE or raw[start:end].strip()):
            kept.append((start, end))
        start = end + 1
    if not kept:
        return b""
    if all(kept[i][1] + 1 == kept[i + 1][0] for i in range(len(kept) - 1)):
        return raw[kept[0][0]:kept[-1][1]]  # contiguous: one slice (no copy when it is all of raw)
    return b"\r".join(raw[a:b] for a, b in kept)


def charset_of(raw: bytes) -> str:
    """The codec MSH-18 names ('' when it names none); an unknown charset cannot be read (AR)."""
    header = raw.split(b"\r", 1)[0]
    if len(header) < 4:
        return ""
    separator = header[3:4]
    fields = header.split(separator)
    declared = fields[17].split(header[4:5] or b"^")[0].strip().upper() if len(fields) > 17 else b""
    name = declared.decode("ascii", errors="replace") if isinstance(declared, bytes) else declared
    if name not in CHARSETS:
        raise CannotProcess(f"character set {name!r} (MSH-18) is not supported: send UNICODE UTF-8 or 8859/1",
                            code=UNSUPPORTED_VERSION, segment="MSH", field=18)
    return CHARSETS[name] or ""


def decode(raw: bytes) -> tuple[str, str]:
    """(text, codec used). Without MSH-18, UTF-8 when the bytes are valid UTF-8, else ISO-8859-1: Latin-1
    decodes any byte, and valid UTF-8 text with umlauts is practically never valid Latin-1 by accident."""
    raw = normalise_bytes(raw)
    codec = charset_of(raw)
    if codec:
        try:
            return raw.decode(codec), codec
        except UnicodeDecodeError:
            raise CannotProcess(f"the message is not valid {codec} as MSH-18 declares", code=UNSUPPORTED_VERSION,
                                segment="MSH", field=18) from None
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1"), "iso-8859-1"
