"""The listener with a mapping worker process (EPR_MLLP_MAP_PROCESSES=1): documents mapped there are
stored and acknowledged like the others; what the worker leaves (a refusal) is answered by the use-case."""

from conftest import SPID, running_gateway, sqlite_url
from functional.mllp_helpers import MllpClient, ack_fields, mdm, running_listener, senders_file


def test_documents_mapped_in_a_worker_process_are_stored_and_refusals_still_answered(tmp_path):
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path),
                         mllp_map_processes=1) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            client = MllpClient(address)
            stored = client.send(mdm(control_id="W-1", unique_id="urn:oid:2.25.701").encode())
            repeat = client.send(mdm(control_id="W-1", unique_id="urn:oid:2.25.701").encode())
            refused = client.send(mdm(control_id="W-2", unique_id="").encode())
            client.close()
        response = gateway.find(SPID)
    assert ack_fields(stored)["MSA"][1:3] == ["AA", "W-1"] and repeat == stored
    assert ack_fields(refused)["MSA"][1:3] == ["AE", "W-2"]
    assert [e["resource"]["masterIdentifier"]["value"] for e in response.json()["entry"]] == ["urn:oid:2.25.701"]
