"""The three intake faces driven with chosen field values, for the tests that walk one table of hostile
values over every (face, field): ITI-65 and ITI-104 over HTTP, HL7 v2 over a real MLLP socket, and XDM
packages through a real migration run."""

from __future__ import annotations

import base64
import hashlib
import uuid
from pathlib import Path

from adapters.infomed.generate import metadata as md
from adapters.infomed.xdm import ebrim
from adapters.infomed.xdm.codes import CodeTables
from conftest import HCP_GLN, LOCAL_SYSTEM
from functional.helpers import row_counts
from functional.mllp_helpers import HOSPITAL, MllpClient, ack_fields, mdm
from gateway.exchanges.imports import ImportExchange
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from gateway.migration.report import build_report
from gateway.samples import pdf_document

LOCAL_OID = LOCAL_SYSTEM.removeprefix("urn:oid:")
DOCUMENT_TABLES = ("submission_set", "document_entry", "document_body", "document_relation", "patient",
                   "patient_identifier", "patient_link")


def document_rows(gateway) -> dict[str, int]:
    """The rows of the record's documents and patients (the ledger and the bridge's answers aside)."""
    counts = row_counts(gateway.runtime)
    return {table: counts[table] for table in DOCUMENT_TABLES}


def control_ids(prefix: str):
    """MSH-10 values, one per message: the bridge remembers each (sender, MSH-10)."""
    n = 0
    while True:
        n += 1
        yield f"{prefix}-{n}"


# -- HL7 v2 ----------------------------------------------------------------------------------------
def hl7_escaped(value: str) -> str:
    """`value` as a sender writes it in a field: the characters HL7 cannot carry raw as escapes
    (the gateway must see, after unescaping, exactly `value`)."""
    return (value.replace("\\", "\\E\\").replace("\t", "\\X09\\").replace("\r", "\\X0D\\")
            .replace("\n", "\\.br\\").replace("\x00", "\\X00\\"))


def mdm_with(*, control_id: str, unique_id: str, local_id: str = "L-1", parent: str = "", author: str = HCP_GLN,
             trigger: str = "T02", sent: str = "20261120100000+0100", activity: str = "20261120093000+0100") -> bytes:
    message = mdm(control_id=control_id, unique_id=hl7_escaped(unique_id), local_id=hl7_escaped(local_id),
                  parent=hl7_escaped(parent), trigger=trigger, charset="UNICODE UTF-8")
    message = message.replace("|7601000000002^Favre^Luc|", f"|{hl7_escaped(author)}^Favre^Luc|")
    message = message.replace("|20261120100000+0100||MDM", f"|{sent}||MDM")
    message = message.replace("|AP|20261120093000+0100|", f"|AP|{activity}|")
    return message.encode("utf-8")


def a08_with(*, control_id: str, local_id: str, birth: str = "19800517") -> bytes:
    return (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A08^ADT_A01|{control_id}|P|2.5|||||CHE|UNICODE UTF-8\r"
            f"EVN|A08|20261120\rPID|1||{hl7_escaped(local_id)}^^^H&{LOCAL_OID}&ISO^PI||Muster^Anna||{birth}|F\r"
            ).encode("utf-8")


def a40_with(*, control_id: str, retired: str) -> bytes:
    return (f"MSH|^~\\&|KIS|{HOSPITAL}|EPR|EPR|20261120||ADT^A40^ADT_A39|{control_id}|P|2.5|||||CHE|UNICODE UTF-8\r"
            f"EVN|A40|20261120\rPID|1||L-1^^^H&{LOCAL_OID}&ISO^PI||Muster^Anna\r"
            f"MRG|{hl7_escaped(retired)}^^^H&{LOCAL_OID}&ISO^PI\r").encode("utf-8")


def send(address, message: bytes) -> tuple[str, str, str]:
    """(MSA-1, ERR-2 location, ERR-3 code) of the ACK the listener sends back."""
    client = MllpClient(address)
    try:
        fields = ack_fields(client.send(message))
    finally:
        client.close()
    err = fields.get("ERR", ["ERR", "", "", ""])
    return fields["MSA"][1], err[2], err[3].split("^")[0]


# -- XDM -------------------------------------------------------------------------------------------
CODES = [
    (ebrim.CLASS_CODE, "ARZTBERICHT", "2.16.756.5.30.1.127.3.10.1.1", "Bericht"),
    (ebrim.TYPE_CODE, "AUSTRITT", "2.16.756.5.30.1.127.3.10.1.2", "Austrittsbericht"),
    (ebrim.FORMAT_CODE, "urn:che:epr:EPR_Unstructured_Document", "2.16.756.5.30.1.127.3.10.10", "Unstructured"),
    (ebrim.CONFIDENTIALITY_CODE, "17621005", md.SNOMED_OID, "Normal"),
    (ebrim.FACILITY_TYPE_CODE, "22232009", md.SNOMED_OID, "Hospital"),
    (ebrim.PRACTICE_SETTING_CODE, "ALLGEMEIN", "2.16.756.5.30.1.127.3.10.1.18", "Allgemeinmedizin"),
]


def xdm_package(directory: Path, *, unique_id: str | None = None, entry_uuid: str | None = None,
                set_unique_id: str | None = None, source_id: str = "2.16.756.5.30.1.145", local_id: str = "L-1",
                author: str = HCP_GLN, creation: str = "20230101093000", service_start: str = "20230101080000",
                submission_time: str = "20240101101500", birth: str = "19800517") -> str:
    """One directory media with one submission set of one PDF; returns the report's source name of
    its document (`<media>/IHE_XDM/SUBSET01/DOC00001.PDF`). Values are written as an export writes
    them: XML-escaped by the metadata helpers (what cannot be XML at all makes the file not XML)."""
    unique_id = unique_id or f"2.25.{uuid.uuid4().int}"
    entry_uuid = entry_uuid or f"urn:uuid:{uuid.uuid4()}"
    set_id = f"urn:uuid:{uuid.uuid4()}"
    data = pdf_document("Rapport de sortie", [unique_id[:40]])
    cx = f"{local_id}^^^&{LOCAL_OID}&ISO"
    doc = {"id": entry_uuid, "mime": "application/pdf", "title": "Rapport de sortie", "codes": CODES,
           "author": (f"{author}^Favre^Luc^^^Dr.^^^&2.51.1.3&ISO", "HCP"), "unique_id": unique_id, "patient_cx": cx,
           "slots": [("creationTime", [creation]), ("languageCode", ["fr-CH"]),
                     ("hash", [hashlib.sha1(data).hexdigest()]), ("size", [str(len(data))]), ("URI", ["DOC00001.PDF"]),
                     ("sourcePatientId", [cx]), ("serviceStartTime", [service_start]),
                     ("sourcePatientInfo", [f"PID-3|{cx}", "PID-5|Muster^Anna^^^", f"PID-7|{birth}", "PID-8|F"])]}
    xml = md.document(md.submission_set(set_id, set_unique_id or f"2.25.{uuid.uuid4().int}", source_id, cx,
                                        submission_time)
                      + md.extrinsic_object(doc) + md.association(1, ebrim.HAS_MEMBER, set_id, entry_uuid))
    subset = directory / "IHE_XDM" / "SUBSET01"
    subset.mkdir(parents=True)
    (subset / "METADATA.XML").write_bytes(xml)
    (subset / "DOC00001.PDF").write_bytes(data)
    return f"{directory.name}/IHE_XDM/SUBSET01/DOC00001.PDF"


def migrate(runtime, sources: list[Path]) -> dict[str, dict]:
    """A real migration run over `sources`; source name → its entry in the reconciliation report."""
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=journal, tables=CodeTables.load([]), principal=migration_principal(HCP_GLN),
                       batch=16, workers=2, dry_run=False)
    job.run(sources)
    report = build_report(journal.rows_for(s.name for s in sources).values(), code_tables=job.tables.version)
    return {d["source"]: d for d in report["documents"]}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
