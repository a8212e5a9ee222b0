"""Bytes off the wire → one text with `\\r` between segments, decoded in the message's character set.

The wild sends `\\n` or `\\r\\n`, a UTF-8 byte-order mark, and "ISO-8859-1" with or without MSH-18.
MSH-18 is read from the raw bytes (its name is ASCII in every charset we accept) before decoding.

**What "ISO-8859-1" means on the wire.** The senders are Windows applications: what they write and label
`8859/1` is windows-1252, which agrees with ISO-8859-1 on every byte except 0x80–0x9F, where ISO-8859-1
has control characters nobody types and windows-1252 has the typographic quote, dash and euro sign that
word processors put in names and titles (`D’Andrea` arrives as `D\\x92Andrea`). So those labels, and
messages without MSH-18 that are not UTF-8, are read as windows-1252: no byte becomes a control
character that was meant as a letter (the WHATWG encoding standard reads the `iso-8859-1` label the same
way). Five bytes have no character in windows-1252 (0x81, 0x8D, 0x8F, 0x90, 0x9D): a message carrying one
is not windows-1252 text (in DOS code page 850, 0x81 is `ü`), so it is refused (AE naming the segment and
field where it is) rather than stored as a control character or guessed. `8859/15` is taken at its word.
"""

from __future__ import annotations

from adapters.infomed.hl7v2.errors import DATA_TYPE_ERROR, UNSUPPORTED_VERSION, CannotProcess, SenderMustFix

BOM = b"\xef\xbb\xbf"
WINDOWS_1252 = "cp1252"
# MSH-18 values (HL7 table 0211) → Python codec. Empty or ASCII: UTF-8 if it decodes, else windows-1252.
CHARSETS = {
    "": None, "ASCII": None,
    "UNICODE UTF-8": "utf-8", "UTF-8": "utf-8", "UNICODE": "utf-8",
    "8859/1": WINDOWS_1252, "ISO-8859-1": WINDOWS_1252, "LATIN1": WINDOWS_1252, "WINDOWS-1252": WINDOWS_1252,
    "CP1252": WINDOWS_1252, "8859/15": "iso-8859-15",
}
_CODEC_NAMES = {"utf-8": "UTF-8", WINDOWS_1252: "windows-1252 (what 8859/1 senders write)",
                "iso-8859-15": "ISO-8859-15"}


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
    """(text, codec used). Without MSH-18, UTF-8 when the bytes are valid UTF-8, else windows-1252 (see
    the module): valid UTF-8 text with umlauts is practically never valid windows-1252 by accident."""
    text, codec, _ = decode_keeping_utf8(raw)
    return text, codec


def decode_keeping_utf8(raw: bytes) -> tuple[str, str, bytes | None]:
    """`decode`, and the normalised bytes when they are the text's UTF-8 (ASCII, or valid UTF-8 read as
    UTF-8), else None. Why keep them: what hashes the text (the same-message digest) would otherwise
    encode it again, and a text with one accented name is not ASCII — encoding 70 KB of it costs more
    than hashing it (bench/README.md)."""
    raw = normalise_bytes(raw)
    codec = charset_of(raw)
    if raw.isascii():  # the usual message (Base64 documents, plain names): every codec reads it alike
        return raw.decode("ascii"), codec or "utf-8", raw
    if not codec:
        try:
            return raw.decode("utf-8"), "utf-8", raw
        except UnicodeDecodeError:
            codec = WINDOWS_1252
    try:
        text = raw.decode(codec)
    except UnicodeDecodeError as error:
        raise _undecodable(raw, error, codec) from None
    return text, codec, raw if codec == "utf-8" else None


def _undecodable(raw: bytes, error: UnicodeDecodeError, codec: str) -> SenderMustFix:
    """AE naming where the first byte that is no character of `codec` sits (segment and field)."""
    at = error.start
    segment_start = raw.rfind(b"\r", 0, at) + 1
    name = raw[segment_start:segment_start + 3].decode("ascii", errors="replace")
    separator = raw[3:4] or b"|"
    field = raw.count(separator, segment_start, at) + (1 if name == "MSH" else 0)
    return SenderMustFix(f"byte 0x{raw[at]:02X} in {name}-{field} is not a character of {_CODEC_NAMES[codec]}: "
                         "send the text in the character set MSH-18 names", code=DATA_TYPE_ERROR,
                         segment=name, field=field)
