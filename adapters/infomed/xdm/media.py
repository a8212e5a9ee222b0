"""XDM media (ITI-32) as a directory or a ZIP file: its submission sets, one at a time.

Streaming: a package hands out its METADATA.XML and reads a document only when asked, so memory
stays bounded by one document (and one METADATA.XML) whatever the size of the export. Members are
looked up by the `URI` the metadata names, never extracted: a `URI` that is absolute or climbs out of
its subset is refused; a ZIP member larger than `MAX_DOCUMENT_BYTES` or inflating more than
`MAX_RATIO` times is refused before it is inflated (and again while inflating, should the header
lie). A ZIP cut short (no central directory) is read from its local headers as far as they go; the
rest is reported as a `MediaProblem`. File names that are not UTF-8 (Latin-1 or CP437 in old ZIP
tools) are matched by their decoded form; backslashes in ZIP names (Windows tools) are separators.

Nothing that leaves the media is followed: in a directory, every file (METADATA.XML included) is
opened by its resolved path inside the media, one component at a time with `O_NOFOLLOW`, so a
symbolic link to a file or directory outside is refused, and so is one swapped in after the check;
only regular files are read (a named pipe would block the run, a device never ends). A hard link
cannot be told from the file it shares: it is read like any file of the media (the export's
producer is trusted with what it hard-links). In a ZIP, a member stored as a symbolic link is
refused, member names that climb (`..`, absolute, drive letters) are refused, and two members of one
name make their package ambiguous: refused, never "the last one wins".

Every source yields something: packages, or `MediaProblem`s saying why none could be read (no
IHE_XDM at its root, the media inside an inner ZIP, …). Refusals that guard the gateway (links out,
climbing names, special files, ambiguous names, DOCTYPE) carry a `security` kind: the migration
audits them besides reporting them.
"""

from __future__ import annotations

import errno
import os
import stat
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
_UNIX = 3  # ZipInfo.create_system of a member made on Unix: its mode is in external_attr's high bits

# The `security` kinds: refusals that protect the gateway rather than report a faulty export.
LINK_OUT = "link-out"  # a symbolic link (file or directory) leading outside the media
LINK_MEMBER = "link-member"  # a ZIP member stored as a symbolic link
CLIMBING = "climbing-name"  # a URI or a member name climbing out (`..`, absolute, drive)
SPECIAL_FILE = "special-file"  # a named pipe, device, socket where a file is expected
AMBIGUOUS = "ambiguous-name"  # two members of one name


class MemberRefused(Exception):
    """A document file that cannot be read safely (escaping URI, missing, bomb, bad CRC). `security`:
    the kind, when the refusal guards the gateway (see the module's kinds)."""

    def __init__(self, reason: str, *, security: str | None = None):
        super().__init__(reason)
        self.security = security


@dataclass(frozen=True)
class MediaProblem:
    """Part of a source that could not be read at all (reported as one rejected source entry)."""

    source: str
    reason: str
    security: str | None = None


def safe_uri(uri: str) -> PurePosixPath:
    """The URI as a path inside its subset, or MemberRefused."""
    if not uri or "\\" in uri or "\x00" in uri:
        raise MemberRefused(f"URI {uri!r} is not a plain relative file name")
    path = PurePosixPath(uri)
    if path.is_absolute() or ".." in path.parts or uri.startswith("~") or ":" in path.parts[0]:
        raise MemberRefused(f"URI {uri!r} climbs out of its package: refused", security=CLIMBING)
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
    real_root = os.path.realpath(root)
    base = root / "IHE_XDM"
    if not base.is_dir():
        yield MediaProblem(label, "no IHE_XDM directory: not XDM media")
        return
    if not _inside(os.path.realpath(base), real_root):
        yield MediaProblem(f"{label}/IHE_XDM", "IHE_XDM is a symbolic link leading outside the media: refused",
                           LINK_OUT)
        return
    found = False
    for subset in sorted(base.iterdir()):
        source = f"{label}/IHE_XDM/{subset.name}"
        if not subset.is_dir():
            continue  # a stray file beside the subsets: no document names it
        found = True
        if not _inside(os.path.realpath(subset), real_root):
            yield MediaProblem(source, "the subset is a symbolic link leading outside the media: refused", LINK_OUT)
            continue
        metadata = subset / "METADATA.XML"
        if not os.path.lexists(metadata):
            yield MediaProblem(source, "no METADATA.XML in this subset")
            continue
        try:
            content = _read_inside(real_root, metadata, "METADATA.XML")
        except MemberRefused as exc:
            yield MediaProblem(f"{source}/METADATA.XML", str(exc), exc.security)
            continue
        yield Package(source, content, _directory_reader(subset, real_root))
    if not found:
        yield MediaProblem(label, "IHE_XDM holds no submission set (no IHE_XDM/<subset>/ directory)")


def _inside(real: str, real_root: str) -> bool:
    return os.path.commonpath([real, real_root]) == real_root


def _read_inside(real_root: str, target: Path, shown: PurePosixPath | str) -> bytes:
    """The bytes of the regular file `target` if it is inside the media, following no link out.

    The path is resolved, checked to be inside, then opened component by component from the media's
    root with `O_NOFOLLOW`: a link swapped in after the check is not followed either."""
    real = os.path.realpath(target)
    if not _inside(real, real_root):
        raise MemberRefused(f"{shown} leads outside the media (symbolic link): refused", security=LINK_OUT)
    parts = os.path.relpath(real, real_root).split(os.sep)
    try:
        directory = os.open(real_root, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for part in parts[:-1]:
                inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
                os.close(directory)
                directory = inner
            # O_NONBLOCK: opening a named pipe must not wait for a writer (it is refused below)
            handle = os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
        finally:
            os.close(directory)
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise MemberRefused(f"{shown} changed into a symbolic link while being read: refused",
                                security=LINK_OUT) from None
        raise MemberRefused(f"{shown} cannot be opened ({exc.strerror})") from None
    try:
        mode = os.fstat(handle)
        if not stat.S_ISREG(mode.st_mode):  # a directory is a faulty export; a pipe or device, an attempt
            raise MemberRefused(f"{shown} is not a regular file ({_file_kind(mode.st_mode)}): refused",
                                security=None if stat.S_ISDIR(mode.st_mode) else SPECIAL_FILE)
        if mode.st_size > MAX_DOCUMENT_BYTES:
            raise MemberRefused(f"{shown} is {mode.st_size} bytes, above the {MAX_DOCUMENT_BYTES} accepted")
        with os.fdopen(handle, "rb", closefd=False) as file:
            data = file.read(MAX_DOCUMENT_BYTES + 1)
    except OSError as exc:
        raise MemberRefused(f"{shown} cannot be read ({exc.strerror})") from None
    finally:
        os.close(handle)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise MemberRefused(f"{shown} grew above the {MAX_DOCUMENT_BYTES} bytes accepted while being read")
    return data


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a named pipe"), (stat.S_ISDIR, "a directory"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a file"


def _directory_reader(subset: Path, real_root: str):
    names: dict[str, bytes] | None = None

    def read(path: PurePosixPath) -> bytes:
        nonlocal names
        target = subset.joinpath(*path.parts)
        if not os.path.lexists(target):  # not under its UTF-8 name: one other decoded form at most (Latin-1)
            if names is None:  # names as bytes on disk, by every decoded form (non-UTF-8 file names)
                names = {form: raw for raw in os.listdir(os.fsencode(subset)) for form in _decoded_forms(raw)}
            raw = names.get(str(path))
            if raw is None:
                raise MemberRefused(f"URI {path} names no file in the package")
            target = Path(os.fsdecode(os.path.join(os.fsencode(subset), raw)))
        return _read_inside(real_root, target, f"URI {path}")

    return read


# -- ZIP files -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Member:
    name: str  # as decoded for matching, backslashes as separators
    offset: int  # of the local header (scan) or None (central directory)
    method: int
    compressed: int
    size: int
    crc: int
    info: zipfile.ZipInfo | None = None

    @property
    def is_link(self) -> bool:
        return (self.info is not None and self.info.create_system == _UNIX
                and stat.S_ISLNK(self.info.external_attr >> 16))


def _zip_packages(path: Path, label: str) -> Iterator[Package | MediaProblem]:
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        members, problem = _scan_local_headers(path)
        archive = None
        yield MediaProblem(label, problem)
        if not members:
            return
    else:
        members = [_Member(_match_name(i), i.header_offset, i.compress_type, i.compress_size, i.file_size, i.CRC, i)
                   for i in archive.infolist() if not i.is_dir()]
    # No explicit close: packages handed out may still be read by worker threads after this generator
    # has moved on; the archive closes when the last package reading it is dropped.
    by_subset: dict[str, dict[str, _Member]] = {}
    twice: dict[str, list[str]] = {}  # subset → names found more than once
    for member in members:
        if _climbs(member.name):
            yield MediaProblem(f"{label}/{member.name}", "the ZIP member's name climbs out of the media "
                               "(.., absolute or a drive): refused", CLIMBING)
            continue
        parts = member.name.split("/")
        if len(parts) >= 3 and parts[0] == "IHE_XDM":
            files = by_subset.setdefault(parts[1], {})
            name = "/".join(parts[2:])
            if name in files:
                twice.setdefault(parts[1], []).append(name)
            files[name] = member
    if not by_subset:
        yield MediaProblem(label, _why_no_package(members))
    for subset in sorted(by_subset):
        files = by_subset[subset]
        source = f"{label}/IHE_XDM/{subset}"
        if subset in twice:
            names = ", ".join(sorted(set(twice[subset]))[:3])
            yield MediaProblem(source, f"the ZIP holds two members of one name ({names}): the package is "
                               "ambiguous, refused", AMBIGUOUS)
            continue
        if "METADATA.XML" not in files:
            yield MediaProblem(source, "no METADATA.XML in this subset (or it was cut off)")
            continue

        def read(uri: PurePosixPath, files=files) -> bytes:
            member = files.get(str(uri))
            if member is None:
                raise MemberRefused(f"URI {uri} names no file in the package")
            if member.is_link:
                raise MemberRefused(f"{member.name} is stored as a symbolic link: refused", security=LINK_MEMBER)
            return _inflate(path, archive, member)

        try:
            metadata = read(PurePosixPath("METADATA.XML"))
        except MemberRefused as exc:
            yield MediaProblem(f"{source}/METADATA.XML", str(exc), exc.security)
            continue
        yield Package(source, metadata, read)


def _climbs(name: str) -> bool:
    parts = name.split("/")
    return name.startswith("/") or ".." in parts or ":" in parts[0]


def _why_no_package(members: list[_Member]) -> str:
    """Why a ZIP yields no package, in words an operator can act on."""
    inner = [m.name for m in members if m.name.lower().endswith(".zip")]
    if inner:
        return (f"no IHE_XDM/ at the ZIP's root; it holds another ZIP ({inner[0]}): unpack it and migrate the "
                "inner ZIP")
    nested = sorted({m.name.split("/IHE_XDM/", 1)[0] for m in members if "/IHE_XDM/" in m.name})
    if nested:
        return (f"no IHE_XDM/ at the ZIP's root; it is inside the folder {nested[0]}/: give the media with "
                "IHE_XDM/ at its root")
    if not members:
        return "the ZIP holds no file"
    return "no IHE_XDM/<subset>/ in the ZIP: not XDM media"


def _match_name(info: zipfile.ZipInfo) -> str:
    if info.flag_bits & _UTF8_FLAG:
        return info.filename.replace("\\", "/")
    raw = info.filename.encode("cp437")  # zipfile decoded the stored bytes as CP437
    return _decoded_forms(raw)[0].replace("\\", "/")


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
    # NotImplementedError: a compression method zipfile lacks; RuntimeError: an encrypted member
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, struct.error, NotImplementedError, RuntimeError) as exc:
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


def _scan_local_headers(path: Path) -> tuple[list[_Member], str]:
    """Members readable from the local headers of a ZIP without its central directory."""
    members: list[_Member] = []
    total = path.stat().st_size
    with open(path, "rb") as handle:
        starts_as_zip = handle.read(4) == b"PK\x03\x04"
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
            forms = _decoded_forms(name_raw)  # UTF-8 first (flagged or not), else Latin-1
            name = forms[0].replace("\\", "/")
            if not name.endswith("/"):
                members.append(_Member(name, offset, method, compressed, size, crc))
            offset = data_start + compressed
    if not starts_as_zip:
        return members, "not a ZIP file (no ZIP header at its start, no central directory): not XDM media"
    return members, (f"the ZIP is truncated (no central directory): {len(members)} members read up to byte "
                     f"{offset} of {total}; what follows is lost")


def open_media(path: Path) -> Iterator[Package | MediaProblem]:
    """The packages of one source (a directory or a ZIP file) in a stable order."""
    label = path.name
    if path.is_dir():
        yield from _directory_packages(path, label)
    elif path.is_file():
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            yield MediaProblem(label, f"the ZIP cannot be opened ({exc.strerror})")
            return
        yield from _zip_packages(path, label)
    elif path.exists():
        yield MediaProblem(label, f"{_file_kind(path.stat().st_mode)}, not a directory or a ZIP file: not read",
                           SPECIAL_FILE)
    else:
        yield MediaProblem(label, "no such file or directory")
