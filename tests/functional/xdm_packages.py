"""Hand-made XDM media for the migration's tests: one patient, good documents, and documents spoiled on
purpose (each a change to the good one), written as a directory or a ZIP.

The good document is what `infomed generate` writes; a spoiled one overrides its slots, codes, ids or
bytes. What the tests assert comes from these choices, never from a migration's output."""

from __future__ import annotations

import hashlib
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from adapters.cara.vocabulary import SPID_SYSTEM
from adapters.infomed.generate import metadata as md
from adapters.infomed.xdm import ebrim

PATIENT_OID = "2.16.756.5.30.1.145.1.2"
LOCAL_ID = "INF-900001"
SPID = "761337610000000017"
PATIENT_CX = f"{LOCAL_ID}^^^&{PATIENT_OID}&ISO"
FAMILY, GIVEN, BIRTH, GENDER = "Favre", "Anna", "19800214", "F"


def patients_file(path: Path) -> Path:
    """The feed of the one patient (local id + SPID) the documents name."""
    path.write_text(json.dumps({
        "resourceType": "Patient",
        "identifier": [{"system": f"urn:oid:{PATIENT_OID}", "value": LOCAL_ID}, {"system": SPID_SYSTEM, "value": SPID}],
        "name": [{"family": FAMILY, "given": [GIVEN]}], "birthDate": "1980-02-14", "gender": "female"}) + "\n")
    return path


@dataclass
class Doc:
    """One document entry of a package; `n` makes its ids and bytes its own."""

    n: int
    slots: dict[str, list[str]] = field(default_factory=dict)  # overrides (a value None drops the slot)
    unique_id: str | None = None
    entry_uuid: str | None = None
    patient_cx: str = PATIENT_CX
    content: bytes | None = None
    uri: str | None = None
    mime: str = "application/pdf"
    author: tuple[str, str] | None = ("7601000000002^Favre^Luc^^^Dr.^^^&2.51.1.3&ISO", "HCP")
    raw_xml: str | None = None  # the ExtrinsicObject as written (after the rest was built): None = as built

    def __post_init__(self):
        self.unique_id = self.unique_id or f"urn:oid:2.25.{9_000_000 + self.n}"
        self.entry_uuid = self.entry_uuid or f"urn:uuid:{uuid.UUID(int=0xD0C0000 + self.n)}"
        self.content = b"%PDF-1.4 document " + str(self.n).encode() + b"\n%%EOF\n" if self.content is None \
            else self.content
        self.uri = self.uri or f"DOC{self.n:05d}.PDF"

    def file_name(self) -> str:
        return self.uri

    def xml(self) -> str:
        slots = {"creationTime": ["20230102093000"], "languageCode": ["fr-CH"],
                 "hash": [hashlib.sha1(self.content).hexdigest()], "size": [str(len(self.content))],
                 "URI": [self.uri], "sourcePatientId": [self.patient_cx],
                 "sourcePatientInfo": [f"PID-3|{self.patient_cx}", f"PID-5|{FAMILY}^{GIVEN}^^^", f"PID-7|{BIRTH}",
                                       f"PID-8|{GENDER}"],
                 "serviceStartTime": ["20230101080000"], "serviceStopTime": ["20230105120000"]}
        for name, values in self.slots.items():
            if values is None:
                slots.pop(name, None)
            else:
                slots[name] = values
        codes = [
            (ebrim.CLASS_CODE, "ARZTBERICHT", "2.16.756.5.30.1.127.3.10.1.1", "Bericht"),
            (ebrim.TYPE_CODE, "AUSTRITT", "2.16.756.5.30.1.127.3.10.1.2", "Austrittsbericht"),
            (ebrim.FORMAT_CODE, "urn:che:epr:EPR_Unstructured_Document", "2.16.756.5.30.1.127.3.10.10", "Unstructured"),
            (ebrim.CONFIDENTIALITY_CODE, "1051000195109", "2.16.756.5.30.1.127.3.10.1.5", "normal"),
            (ebrim.FACILITY_TYPE_CODE, "22232009", md.SNOMED_OID, "Hospital"),
            (ebrim.PRACTICE_SETTING_CODE, "ALLGEMEIN", "2.16.756.5.30.1.127.3.10.1.18", "Allgemeinmedizin"),
        ]
        built = md.extrinsic_object({"id": self.entry_uuid, "mime": self.mime, "title": f"Austritt {self.n}",
                                     "slots": list(slots.items()), "codes": codes, "author": self.author,
                                     "unique_id": self.unique_id, "patient_cx": self.patient_cx})
        return built if self.raw_xml is None else self.raw_xml.replace("{built}", built)


def metadata_xml(docs: list[Doc], *, set_n: int = 1, submission_time: str = "20240301101500") -> bytes:
    set_id = f"urn:uuid:{uuid.UUID(int=0x5E70000 + set_n)}"
    body = [md.submission_set(set_id, f"urn:oid:2.25.{8_000_000 + set_n}", "urn:oid:2.16.756.5.30.1.145.1",
                              PATIENT_CX, submission_time)]
    body += [d.xml() for d in docs]
    body += [md.association(i, ebrim.HAS_MEMBER, set_id, d.entry_uuid) for i, d in enumerate(docs, start=1)]
    return md.document("".join(body))


def package_members(docs: list[Doc], *, subset: str = "SUBSET01", **kwargs) -> dict[str, bytes]:
    """The members of one package: its METADATA.XML first, then each document's file."""
    members = {f"IHE_XDM/{subset}/METADATA.XML": metadata_xml(docs, **kwargs)}
    members.update({f"IHE_XDM/{subset}/{d.file_name()}": d.content for d in docs})
    return members


def write_directory(root: Path, members: dict[str, bytes]) -> Path:
    for name, data in members.items():
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return root


def write_zip(path: Path, members: list[tuple[str, bytes]] | dict[str, bytes]) -> Path:
    """Members in the order given; a list may name one member twice (what zipfile allows, with a warning)."""
    import warnings

    items = members.items() if isinstance(members, dict) else members
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "Duplicate name": wanted, where a test names one twice
        with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, data in items:
                archive.writestr(name, data)
    return path
