"""`epr-gateway infomed generate`: XDM media as Infomed exports them, a patient feed, and a manifest.

Layout: `media-NNNNN/` directories (or `.zip` files with `--zip`), each holding up to
`SUBSETS_PER_MEDIA` submission sets `IHE_XDM/SUBSETnn/` (METADATA.XML first, then the documents);
`patients.ndjson` (ITI-104 Patient resources: the Infomed local id, demographics, the SPID for those
with an EPR); `manifest.json`: what the generator put in, quirk by quirk, and the outcome a correct
migration must give each source document — the test oracle, written from the generator's own
choices, never from a migration's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from adapters.cara.vocabulary import SPID_SYSTEM
from adapters.infomed.generate import metadata as md
from adapters.infomed.generate.bodies import Bodies
from adapters.infomed.xdm import ebrim

INFOMED_PATIENT_OID = "2.16.756.5.30.1.145.1.2"
INFOMED_SOURCE_OID = "2.16.756.5.30.1.145.1"
SUBSETS_PER_MEDIA = 40
MARKER = ".infomed-generate"  # in a directory `generate` wrote: the one kind it replaces unasked
DOCS_PER_SUBSET = 5
DOCUMENT_QUIRKS = ("hash-mismatch", "size-mismatch", "duplicate-same", "duplicate-different", "replacement",
                   "addendum", "missing-optional", "unmapped-code", "non-utf8-name", "escaping-uri")
PATIENT_QUIRKS = ("unknown-patient", "no-epr", "conflicting-demographics")
EXPECTED = {
    None: "migrated", "hash-mismatch": "rejected", "size-mismatch": "rejected", "duplicate-same": "already_present",
    "duplicate-different": "rejected", "replacement": "migrated", "addendum": "migrated",
    "missing-optional": "migrated", "unmapped-code": "held", "non-utf8-name": "migrated",
    "escaping-uri": "rejected", "unknown-patient": "held", "no-epr": "held", "conflicting-demographics": "held",
}
FAMILIES = ("Favre", "Bonvin", "Rey", "Fournier", "Zufferey", "Crettenand", "Müller", "Imboden", "Théodoloz")
GIVENS = ("Anna", "Luc", "Marie", "Jean", "Sophie", "Pierre", "Élodie", "Noé", "Lea")


@dataclass
class Patient:
    local_id: str
    spid: str | None
    family: str
    given: str
    birth_date: str  # YYYYMMDD
    gender: str  # F | M
    documents: list = field(default_factory=list)  # (unique_id, entry_uuid, content) that will migrate

    @property
    def cx(self) -> str:
        return f"{self.local_id}^^^&{INFOMED_PATIENT_OID}&ISO"

    def feed(self) -> dict:
        identifiers = [{"system": f"urn:oid:{INFOMED_PATIENT_OID}", "value": self.local_id}]
        if self.spid:
            identifiers.append({"system": SPID_SYSTEM, "value": self.spid})
        return {"resourceType": "Patient", "identifier": identifiers,
                "name": [{"family": self.family, "given": [self.given]}],
                "birthDate": f"{self.birth_date[:4]}-{self.birth_date[4:6]}-{self.birth_date[6:]}",
                "gender": "female" if self.gender == "F" else "male"}


@dataclass(frozen=True)
class GeneratedExport:
    out: Path
    media: list[Path]
    patients_file: Path
    manifest_file: Path
    documents: int
    total_bytes: int


class _RawNameInfo(zipfile.ZipInfo):
    """A member whose name is stored as given bytes without the UTF-8 flag, as old ZIP tools did."""

    __slots__ = ("raw",)

    def _encodeFilenameFlags(self):  # noqa: N802 (zipfile's name)
        if self.raw is None:
            return super()._encodeFilenameFlags()
        return self.raw, self.flag_bits & ~0x800


class _Writer:
    """Writes one media (directory or ZIP) member by member."""

    def __init__(self, path: Path, as_zip: bool):
        self.path = path
        self.as_zip = as_zip
        self.archive = zipfile.ZipFile(path, "w") if as_zip else None
        if not as_zip:
            path.mkdir(parents=True)

    def write(self, name: str, data: bytes, *, raw_name: bytes | None = None) -> None:
        """`raw_name`: the file name's bytes as an old tool stores them (Latin-1, no UTF-8 flag)."""
        folder = name.rsplit("/", 1)[0]
        if self.archive is not None:
            stored = None if raw_name is None else folder.encode() + b"/" + raw_name
            info = _RawNameInfo(name if stored is None else stored.decode("cp437"), (2024, 3, 1, 10, 0, 0))
            info.raw = stored
            info.compress_type = zipfile.ZIP_DEFLATED if name.endswith(".XML") else zipfile.ZIP_STORED
            self.archive.writestr(info, data)
            return
        (self.path / folder).mkdir(parents=True, exist_ok=True)
        target = os.fsencode(self.path / folder) + b"/" + raw_name if raw_name else self.path / name
        with open(target, "wb") as handle:
            handle.write(data)

    def close(self) -> None:
        if self.archive is not None:
            self.archive.close()


class OutputInUse(Exception):
    """`out` holds something `generate` did not write: it is not replaced unless forced."""


def _make_room(out: Path, *, force: bool) -> None:
    """`out` ready to be written: new, empty, or an export written here before (its marker file) —
    replaced; anything else only with `force`, since replacing it deletes what it holds."""
    if not out.exists() and not out.is_symlink():
        return
    if out.is_dir() and not out.is_symlink():
        if not any(out.iterdir()):
            return
        if force or (out / MARKER).is_file():
            shutil.rmtree(out)
            return
        raise OutputInUse(f"{out} is not empty and was not written by `infomed generate` (no {MARKER}): give a new "
                          "or empty directory, or --force to delete what it holds and write there")
    if not force:
        raise OutputInUse(f"{out} exists and is not a directory: give a new or empty directory, or --force to "
                          "replace it")
    out.unlink()


def generate(*, out: Path, documents: int, patients: int, seed: int = 1, as_zip: bool = False,
             quirks: float = 0.0, docs_per_subset: int = DOCS_PER_SUBSET,
             subsets_per_media: int = SUBSETS_PER_MEDIA, force: bool = False) -> GeneratedExport:
    _make_room(out, force=force)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text("written by `epr-gateway infomed generate`: a later generate may replace this "
                              "directory\n", encoding="utf-8")
    rng = random.Random(seed)
    bodies = Bodies(seed)
    population = [_patient(rng, n, epr=n % 10 != 9) for n in range(max(patients, 2))]
    with_epr = [p for p in population if p.spid]
    without_epr = [p for p in population if not p.spid] or [population[-1]]
    manifest: dict = {"seed": seed, "quirks": quirks, "documents": {}, "problems": {}, "lost": []}
    media: list[Path] = []
    writer: _Writer | None = None
    subset_number = 0
    made = 0
    total_bytes = 0
    replaced: dict[str, str] = {}  # target source -> replacing source
    patient_turn = document_turn = 0
    while made < documents:
        if writer is None or subset_number >= subsets_per_media:
            if writer is not None:
                writer.close()
            name = f"media-{len(media) + 1:05d}" + (".zip" if as_zip else "")
            writer = _Writer(out / name, as_zip)
            media.append(out / name)
            subset_number = 0
            if quirks and len(media) == 1:  # one METADATA.XML with an entity bomb, first media
                subset_number += 1
                writer.write(f"IHE_XDM/SUBSET{subset_number:02d}/METADATA.XML", md.ENTITY_BOMB)
                manifest["problems"][f"{name}/IHE_XDM/SUBSET{subset_number:02d}/METADATA.XML"] = "entity-bomb"
        subset_number += 1
        media_name = media[-1].name
        subset = f"IHE_XDM/SUBSET{subset_number:02d}"
        # Quirks in turn (not drawn): every kind appears once the export is large enough for them all.
        patient_quirk = None
        if quirks and rng.random() < quirks:
            patient_quirk = PATIENT_QUIRKS[patient_turn % len(PATIENT_QUIRKS)]
            patient_turn += 1
        patient = _subset_patient(rng, patient_quirk, with_epr, without_epr, made)
        count = min(documents - made, rng.randint(1, docs_per_subset))
        set_id = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
        set_unique_id = f"urn:oid:2.25.{rng.getrandbits(96)}"
        body, files, associations = [], [], []
        for n in range(1, count + 1):
            quirk = patient_quirk
            if quirk is None and quirks and rng.random() < quirks:
                quirk = DOCUMENT_QUIRKS[document_turn % len(DOCUMENT_QUIRKS)]
            wanted = quirk
            doc, data, file_name, raw_name, quirk = _document(rng, bodies, patient, quirk, n, made + n)
            if patient_quirk is None and wanted is not None and quirk == wanted:
                document_turn += 1  # a quirk that needs an earlier document waits for one
            uri = next(values[0] for name, values in doc["slots"] if name == "URI")
            source = f"{media_name}/{subset}/{uri}"  # as the report names it: <package path>/<URI>
            body.append(md.extrinsic_object(doc))
            associations.append(md.association(n, ebrim.HAS_MEMBER, set_id, doc["id"]))
            if doc.get("relation"):
                code, target_source, target_uuid = doc["relation"]
                associations.append(md.association(100 + n, code, doc["id"], target_uuid))
                if code == ebrim.RPLC:
                    replaced[target_source] = source
            if quirk != "escaping-uri":
                files.append((f"{subset}/{file_name}", data, raw_name))
            manifest["documents"][source] = {"uniqueId": doc["unique_id"], "quirk": quirk,
                                             "outcome": EXPECTED[quirk]}
            if EXPECTED[quirk] == "migrated" and quirk not in ("duplicate-same",):
                patient.documents.append((doc["unique_id"], doc["id"], data, source))
                del patient.documents[:-8]  # the last few are enough to duplicate or replace: memory bounded
            total_bytes += len(data)
        made += count
        time = f"2024{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}101500"
        xml = md.document(md.submission_set(set_id, set_unique_id, f"urn:oid:{INFOMED_SOURCE_OID}", patient.cx, time)
                          + "".join(body) + "".join(associations))
        writer.write(f"{subset}/METADATA.XML", xml)
        for name, data, raw_name in files:
            writer.write(name, data, raw_name=raw_name)
    assert writer is not None
    writer.close()
    for target, source in replaced.items():
        if manifest["documents"][source]["outcome"] == "migrated":
            manifest["documents"][target]["outcome"] = "superseded"
    if quirks and as_zip:
        _truncate_last(media[-1], manifest, replaced)
    patients_file = out / "patients.ndjson"
    patients_file.write_text("".join(json.dumps(p.feed(), ensure_ascii=False) + "\n" for p in population),
                             encoding="utf-8")
    manifest_file = out / "manifest.json"
    manifest_file.write_text(json.dumps(manifest, indent=1, ensure_ascii=False), encoding="utf-8")
    return GeneratedExport(out, media, patients_file, manifest_file, documents, total_bytes)


def _patient(rng: random.Random, n: int, *, epr: bool) -> Patient:
    spid = f"76133761{rng.randrange(10**10):010d}" if epr else None
    return Patient(f"INF-{n:06d}", spid, rng.choice(FAMILIES), rng.choice(GIVENS),
                   f"{rng.randint(1930, 2020)}{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}", rng.choice("FM"))


def _subset_patient(rng, quirk, with_epr, without_epr, made) -> Patient:
    if quirk == "unknown-patient":
        return Patient(f"INF-U{made:06d}", None, "Inconnu", "Jean", "19700101", "M")
    if quirk == "no-epr":
        return rng.choice(without_epr)
    patient = rng.choice(with_epr)
    if quirk == "conflicting-demographics":
        other = f"{int(patient.birth_date[:4]) - 1}{patient.birth_date[4:]}"
        return Patient(patient.local_id, patient.spid, patient.family, patient.given, other, patient.gender)
    return patient


def _document(rng, bodies: Bodies, patient: Patient, quirk, n: int, number: int):
    unique_id = f"urn:oid:2.25.{rng.getrandbits(100)}"
    entry_uuid = f"urn:uuid:{uuid.UUID(int=rng.getrandbits(128))}"
    relation = None
    earlier = [d for d in patient.documents] if quirk in ("duplicate-same", "duplicate-different", "replacement",
                                                         "addendum") else []
    if quirk in ("duplicate-same", "duplicate-different", "replacement", "addendum") and not earlier:
        quirk = None
    as_cda = rng.random() < 0.2
    title = ("Laborbefund" if as_cda else "Rapport de sortie") + f" {number}"
    size = bodies.size()
    data = bodies.cda(unique_id, title, size) if as_cda else bodies.pdf(unique_id, title, size)
    if quirk in ("duplicate-same", "duplicate-different"):
        target_uid, _, target_data, _ = rng.choice(earlier)
        unique_id = target_uid
        data = target_data if quirk == "duplicate-same" else data
    if quirk in ("replacement", "addendum"):
        target_uid, target_uuid, _, target_source = rng.choice(earlier)
        relation = (ebrim.RPLC if quirk == "replacement" else ebrim.APND, target_source, target_uuid)
        if quirk == "replacement":  # a replaced document cannot be replaced again
            patient.documents[:] = [d for d in patient.documents if d[0] != target_uid]
    extension = "XML" if as_cda else "PDF"
    file_name, raw_name = f"DOC{n:05d}.{extension}", None
    if quirk == "non-utf8-name":
        file_name = f"DOC{n:05d}_dépôt.{extension}"
        raw_name = file_name.encode("latin-1")
    uri = "../../etc/passwd" if quirk == "escaping-uri" else file_name
    sha1, size_slot = hashlib.sha1(data).hexdigest(), str(len(data))
    if quirk == "hash-mismatch":
        sha1 = hashlib.sha1(data + b"x").hexdigest()
    if quirk == "size-mismatch":
        size_slot = str(len(data) + 17)
    type_code = ("4241000179101", md.SNOMED_OID, "Laboratory report") if as_cda else \
        ("AUSTRITT", "2.16.756.5.30.1.127.3.10.1.2", "Austrittsbericht")
    if quirk == "unmapped-code":
        type_code = ("NOTFALLBERICHT", "2.16.756.5.30.1.127.3.10.1.2", "Notfallbericht")
    codes = [
        (ebrim.CLASS_CODE, "ARZTBERICHT" if not as_cda else "LABOR", "2.16.756.5.30.1.127.3.10.1.1", "Bericht"),
        (ebrim.TYPE_CODE, *type_code),
        (ebrim.FORMAT_CODE, "urn:che:epr:EPR_Unstructured_Document", "2.16.756.5.30.1.127.3.10.10", "Unstructured"),
        (ebrim.CONFIDENTIALITY_CODE, "1051000195109" if rng.random() < 0.5 else "17621005",
         "2.16.756.5.30.1.127.3.10.1.5" if rng.random() < 0.5 else md.SNOMED_OID, "normal"),
        (ebrim.FACILITY_TYPE_CODE, "22232009", md.SNOMED_OID, "Hospital"),
        (ebrim.PRACTICE_SETTING_CODE, "ALLGEMEIN", "2.16.756.5.30.1.127.3.10.1.18", "Allgemeinmedizin"),
    ]
    # confidentiality: scheme and code drawn independently above; keep only pairs the table knows
    scheme, code = codes[3][2], codes[3][1]
    if scheme == md.SNOMED_OID and code == "1051000195109":
        codes[3] = (ebrim.CONFIDENTIALITY_CODE, "17621005", md.SNOMED_OID, "Normal")
    if scheme != md.SNOMED_OID and code == "17621005":
        codes[3] = (ebrim.CONFIDENTIALITY_CODE, "1051000195109", scheme, "normal")
    slots = [("creationTime", [f"2023{rng.randint(1, 12):02d}{rng.randint(1, 28):02d}093000"]),
             ("languageCode", ["fr-CH" if rng.random() < 0.6 else "de-CH"]),
             ("hash", [sha1]), ("size", [size_slot]), ("URI", [uri]),
             ("sourcePatientId", [patient.cx]),
             ("sourcePatientInfo", [f"PID-3|{patient.cx}", f"PID-5|{patient.family}^{patient.given}^^^",
                                    f"PID-7|{patient.birth_date}", f"PID-8|{patient.gender}"])]
    optional = quirk != "missing-optional"
    if optional:
        slots += [("serviceStartTime", ["20230101080000"]), ("serviceStopTime", ["20230105120000"])]
        codes.append((ebrim.EVENT_CODE, "386053000", md.SNOMED_OID, "Evaluation procedure"))
    doc = {"id": entry_uuid, "mime": "text/xml" if as_cda else "application/pdf",
           "title": title if optional else None, "slots": slots, "codes": codes,
           "author": (f"7601000000002^Favre^Luc^^^Dr.^^^&2.51.1.3&ISO", "HCP"),
           "unique_id": unique_id, "patient_cx": patient.cx, "relation": relation}
    return doc, data, file_name, raw_name, quirk


def _truncate_last(path: Path, manifest: dict, replaced: dict[str, str]) -> None:
    """Cut the last ZIP at 60 % of its length (no central directory); note what can no longer be read."""
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
    total = path.stat().st_size
    cut = int(total * 0.6)
    with open(path, "r+b") as handle:
        handle.truncate(cut)
    readable = set()
    for index, info in enumerate(infos):
        end = infos[index + 1].header_offset if index + 1 < len(infos) else total
        if end <= cut:
            readable.add(info.filename.encode("cp437") if not info.flag_bits & 0x800 else info.filename.encode())
    label = path.name
    manifest["problems"][label] = "truncated-zip"
    subsets_with_metadata = {name.decode("utf-8", "replace").rsplit("/", 1)[0]
                             for name in readable if name.endswith(b"/METADATA.XML")}
    for source, expected in list(manifest["documents"].items()):
        if not source.startswith(label + "/"):
            continue
        member = source[len(label) + 1:]
        subset = "/".join(member.split("/")[:2])  # IHE_XDM/SUBSETnn (a URI may have slashes)
        if subset not in subsets_with_metadata:
            manifest["lost"].append(source)  # its METADATA.XML is gone: the reader cannot know it
            del manifest["documents"][source]
        elif member.encode("latin-1" if expected["quirk"] == "non-utf8-name" else "utf-8") not in readable \
                and expected["quirk"] != "escaping-uri":
            expected["outcome"], expected["quirk"] = "rejected", "truncated-zip"
    for target, source in replaced.items():  # a replacement lost to the cut no longer supersedes
        replacing = manifest["documents"].get(source)
        if target in manifest["documents"] and (replacing is None or replacing["outcome"] != "migrated") \
                and manifest["documents"][target]["outcome"] == "superseded":
            manifest["documents"][target]["outcome"] = "migrated"
