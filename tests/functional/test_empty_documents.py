"""An empty document is refused alike on every face (issue 22 item 5): ITI-65, HL7 v2 over MLLP and the
XDM migration each refuse 0 bytes through one rule (`adapters/cara/document_content.py`), with its
words, and store nothing of it."""

from __future__ import annotations

from sqlalchemy import func, select

from adapters.cara.document_content import EMPTY_DOCUMENT
from adapters.cara.store.schema import document_entry
from adapters.infomed.xdm.codes import CodeTables
from conftest import HCP_GLN, running_gateway
from functional.helpers import one_document_bundle
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file
from gateway.exchanges.imports import ImportExchange
from gateway.migration.feed import feed_patients
from gateway.migration.job import MigrationJob, migration_principal
from gateway.migration.journal import Journal
from xdm_packages import Doc, package_members, patients_file, write_directory


def stored(runtime) -> int:
    with runtime.engine.connect() as connection:
        return connection.execute(select(func.count()).select_from(document_entry)).scalar_one()


def test_an_empty_document_is_refused_with_one_message_on_every_face(tmp_path, database_url):
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        feed_patients(gateway.services, patients_file(tmp_path / "patients.ndjson"), onboard=True)

        # ITI-65: an empty Binary
        answer = gateway.provide(one_document_bundle(content=b""))
        fhir = [issue["diagnostics"] for issue in answer.json()["issue"]]

        # HL7 v2 over MLLP: an ED whose data is empty, in each encoding
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            acks = [ack_fields(client.send(mdm(control_id=f"E-{n}", unique_id=f"urn:oid:2.25.55{n}", data="",
                                               encoding=encoding).encode()))
                    for n, encoding in enumerate(("Base64", "Hex", "A"))]
            client.close()

        # the XDM migration: a 0-byte file named by its metadata
        media = write_directory(tmp_path / "media-empty", package_members([Doc(1, content=b"")]))
        journal = Journal(engine=gateway.runtime.engine, keyring=gateway.runtime.keyring)
        MigrationJob(exchange=gateway.services.exchange, imports=ImportExchange(exchange=gateway.services.exchange),
                     journal=journal, tables=CodeTables.load(), principal=migration_principal(HCP_GLN),
                     workers=0).run([media])
        row = journal.rows_for(["media-empty"])["media-empty/IHE_XDM/SUBSET01/DOC00001.PDF"]

        assert answer.status_code == 422 and fhir == [EMPTY_DOCUMENT]
        assert [(a["MSA"][1], a["MSA"][3], a["ERR"][2]) for a in acks] == [
            ("AE", f"OBX-5.5: {EMPTY_DOCUMENT}", "OBX^1^5^5")] * 3
        assert (row.outcome, row.reason) == ("rejected", EMPTY_DOCUMENT)
        assert stored(gateway.runtime) == 0
