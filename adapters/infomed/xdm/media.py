"""XDM media (ITI-32) as a directory or a ZIP file: its submission sets, one at a time.

Streaming: a package hands out its METADATA.XML and reads a document only when asked, so memory
stays bounded by one document (and one METADATA.XML) whatever the size of the export. Members are
looked up by the `URI` the metadata names, never extracted: a `URI` that is absolute or climbs out of
its subset is refused, and so is a symlink leaving the media; a ZIP member larger than
`MAX_DOCUMENT_BYTES` or inflating more than `MAX_RATIO` times is refused before it is inflated
(and again while inflating, should the header lie). A ZIP cut short (no central directory) is read
from its local headers as far as they go; the rest is reported as a `MediaProblem`. File names that
are not UTF-8 (Latin-1 or CP437 in old ZIP tools) are matched by their decoded form.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

MAX_DOCUMENT_BYTES = 256 * 1024 * 1024
MAX_RATIO = 100  # inflated / compressed, checked for members above RATIO_FLOOR
RATIO_FLOOR = 1024 * 1024
_LOCAL_HEADER = struct.Struct("<4sHHHHHIIIHH")
_UTF8_FLAG = 0x800


class MemberRefused(Exception):
    """A document file that cannot be read safely (escaping URI, missing, bomb, bad CRC)."""


@dataclass(frozen=True)
class MediaProblem:
    """Part of a source that could not be read at all (reported as one rejected source entry)."""

    source: str
    reason: str


def safe_uri(uri: str) -> PurePosixPath:
    """The URI as a path inside its subset, or MemberRefused."""
    if not uri or "\\" in uri or "\x00" in uri:
        raise MemberRefused(f"URI {uri!r} is not a plain relative file name")
    path = PurePosixPath(uri)
    if path.is_absolute() or ".." in path.parts or uri.startswith("~") or ":" in path.parts[0]:
        raise MemberRefused(f"URI {uri!r} climbs out of its package: refused")
    return path


def _decoded_forms(raw: bytes) -> list[str]:
    forms = []
    for encoding in ("utf-8", "latin-1"):
        try:
            forms.append(raw.decode(encoding))
        except UnicodeDecodeError:
            continue
    return forms


class Package:
    """One submission set: `IHE_XDM/<subset>/` with its METADATA.XML."""

    def __init__(self, source: str, metadata: bytes, reader):
        self.source = source  # "<media name>/IHE_XDM/<subset>"
        self.metadata = metadata
        self._reader = reader

    def read(self, uri: str) -> bytes:
        return self._reader(safe_uri(uri))


# -- directories -------------------------------------------------------------------------------------
def _directory_packages(root: Path, label: str) -> Iterator[Package | MediaProblem]:
    base = root / "IHE_XDM"
    if not base.is_dir():
        yield MediaProblem(label, "no IHE_XDM directory: not XDM media")
        return
    real_root = os.path.realpath(root)
    for subset in sorted(p for p in base.iterdir() if p.is_dir()):
        source = f"{label}/IHE_XDM/{subset.name}"
        metadata = subset / "METADATA.XML"
        if not metadata.is_file():
            yield MediaProblem(source, "no METADATA.XML in this subset")
            continue
        yield Package(source, metadata.read_bytes(), _directory_reader(subset, real_root))


def _directory_reader(subset: Path, real_root: str):
    names: dict[str, bytes] | None = None

    def read(path: PurePosixPath) -> bytes:
        nonlocal names
        target = subset.joinpath(*path.parts)
        if not os.path.lexists(target):
            if names is None:  # names as bytes on disk, by every decoded form (non-UTF-8 file names)
                names = {form: raw for raw in os.listdir(os.fsencode(subset)) for form in _decoded_forms(raw)}
            raw = names.get(str(path))
            if raw is None:
                raise MemberRefused(f"URI {path} names no file in the package")
            target = Path(os.fsdecode(os.path.join(os.fsencode(subset), raw)))
        real = os.path.realpath(target)
        if os.path.commonpath([real, real_root]) != real_root:
            raise MemberRefused(f"URI {path} leads outside the media (symbolic link): refused")
        size = os.path.getsize(real)
        if size > MAX_DOCUMENT_BYTES:
            raise MemberRefused(f"URI {path} is {size} bytes, above the {MAX_DOCUMENT_BYTES} accepted")
        with open(real, "rb") as handle:
            return handle.read()

    return read


# -- ZIP files -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Member:
    name: str  # as decoded for matching
    offset: int  # of the local header (scan) or None (central directory)
    method: int
    compressed: int
    size: int
    crc: int
    info: zipfile.ZipInfo | None = None


def _zip_packages(path: Path, label: str) -> Iterator[Package | MediaProblem]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        members, problem = _scan_local_headers(path)
        archive = None
        if problem:
            yield MediaProblem(label, problem)
    else:
        members = [_Member(_match_name(i), i.header_offset, i.compress_type, i.compress_size, i.file_size, i.CRC, i)
                   for i in archive.infolist() if not i.is_dir()]
    # No explicit close: packages handed out may still be read by worker threads after this generator
    # has moved on; the archive closes when the last package reading it is dropped.
    by_subset: dict[str, dict[str, _Member]] = {}
    for member in members:
        parts = member.name.split("/")
        if len(parts) >= 3 and parts[0] == "IHE_XDM":
            by_subset.setdefault(parts[1], {})["/".join(parts[2:])] = member
    for subset in sorted(by_subset):
        files = by_subset[subset]
        source = f"{label}/IHE_XDM/{subset}"
        if "METADATA.XML" not in files:
            yield MediaProblem(source, "no METADATA.XML in this subset (or it was cut off)")
            continue

        def read(uri: PurePosixPath, files=files) -> bytes:
            member = files.get(str(uri))
            if member is None:
                raise MemberRefused(f"URI {uri} names no file in the package")
            return _inflate(path, archive, member)

        try:
            metadata = read(PurePosixPath("METADATA.XML"))
        except MemberRefused as exc:
            yield MediaProblem(f"{source}/METADATA.XML", str(exc))
            continue
        yield Package(source, metadata, read)


def _match_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & _UTF8_FLAG:
        return info.filename
    raw = info.filename.encode("cp437")  # zipfile decoded the stored bytes as CP437
    return _decoded_forms(raw)[0]


def _check_sizes(member: _Member) -> None:
    if member.size > MAX_DOCUMENT_BYTES:
        raise MemberRefused(f"{member.name} inflates to {member.size} bytes, above the {MAX_DOCUMENT_BYTES} accepted")
    if member.size > RATIO_FLOOR and member.size > MAX_RATIO * max(member.compressed, 1):
        raise MemberRefused(f"{member.name} inflates {member.size // max(member.compressed, 1)} times: "
                            "refused as a decompression bomb")


def _inflate(path: Path, archive: zipfile.ZipFile | None, member: _Member) -> bytes:
    _check_sizes(member)
    limit = min(member.size, MAX_DOCUMENT_BYTES)
    try:
        if archive is not None and member.info is not None:
            with archive.open(member.info) as handle:
                data = handle.read(limit + 1)
        else:
            data = _read_scanned(path, member, limit)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
        raise MemberRefused(f"{member.name} cannot be read from the ZIP ({exc})") from exc
    if len(data) != member.size:
        raise MemberRefused(f"{member.name} inflates to another size than its header says: refused")
    return data


def _read_scanned(path: Path, member: _Member, limit: int) -> bytes:
    with open(path, "rb") as handle:
        handle.seek(member.offset)
        header = _LOCAL_HEADER.unpack(handle.read(_LOCAL_HEADER.size))
        handle.seek(header[9] + header[10], os.SEEK_CUR)
        compressed = handle.read(member.compressed)
    if member.method == zipfile.ZIP_STORED:
        data = compressed[:limit + 1]
    elif member.method == zipfile.ZIP_DEFLATED:
        data = zlib.decompressobj(-15).decompress(compressed, limit + 1)
    else:
        raise MemberRefused(f"{member.name} uses compression method {member.method}, not supported")
    if zlib.crc32(data) != member.crc:
        raise MemberRefused(f"{member.name} does not match its CRC-32")
    return data


def _scan_local_headers(path: Path) -> tuple[list[_Member], str | None]:
    """Members readable from the local headers of a ZIP without its central directory."""
    members: list[_Member] = []
    total = path.stat().st_size
    with open(path, "rb") as handle:
        offset = 0
        while True:
            handle.seek(offset)
            raw = handle.read(_LOCAL_HEADER.size)
            if len(raw) < _LOCAL_HEADER.size or raw[:4] != b"PK\x03\x04":
                break
            _, _, flags, method, _, _, crc, compressed, size, name_length, extra_length = _LOCAL_HEADER.unpack(raw)
            name_raw = handle.read(name_length)
            data_start = offset + _LOCAL_HEADER.size + name_length + extra_length
            if flags & 0x08 or data_start + compressed > total:
                break  # sizes unknown (data descriptor) or the data is cut off: nothing further is readable
            name = name_raw.decode("utf-8") if flags & _UTF8_FLAG else _decoded_forms(name_raw)[0]
            if not name.endswith("/"):
                members.append(_Member(name, offset, method, compressed, size, crc))
            offset = data_start + compressed
    return members, (f"the ZIP is truncated (no central directory): {len(members)} members read up to byte "
                     f"{offset} of {total}; what follows is lost")


def open_media(path: Path) -> Iterator[Package | MediaProblem]:
    """The packages of one source (a directory or a ZIP file) in a stable order."""
    label = path.name
    if path.is_dir():
        yield from _directory_packages(path, label)
    elif path.is_file():
        yield from _zip_packages(path, label)
    else:
        yield MediaProblem(label, "no such file or directory")
