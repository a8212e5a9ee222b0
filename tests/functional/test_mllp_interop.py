"""Interoperability with an MLLP client no one here wrote: python-hl7's `mllp_send` delivers a file of
messages (LF line ends, as files have them) over one connection and prints each ACK it receives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import running_gateway, sqlite_url
from functional.mllp_helpers import mdm, running_listener, senders_file

MLLP_SEND = Path(sys.executable).with_name("mllp_send")


def test_mllp_send_delivers_a_file_of_messages_and_receives_their_acks(tmp_path):
    messages = [mdm(control_id=f"F-{n}", unique_id=f"urn:oid:2.25.300{n}", separator="\n") for n in range(3)]
    messages.append(mdm(control_id="F-3", unique_id="", separator="\n"))  # no TXA-12: AE
    batch = tmp_path / "batch.hl7"
    batch.write_text("".join(messages), encoding="utf-8")
    with running_gateway(tmp_path, sqlite_url(tmp_path), mllp_senders=senders_file(tmp_path)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as (host, port):
            done = subprocess.run([str(MLLP_SEND), "--loose", "-f", str(batch), "-p", str(port), host],
                                  capture_output=True, timeout=60, check=True)
        found = gateway.find().json()

    acks = [line for line in done.stdout.decode().splitlines() if "MSA|" in line]
    assert [line.split("MSA|", 1)[1].split("|")[:2] for line in acks] == [
        ["AA", "F-0"], ["AA", "F-1"], ["AA", "F-2"], ["AE", "F-3"]]
    assert sorted(e["resource"]["masterIdentifier"]["value"] for e in found["entry"]) == [
        "urn:oid:2.25.3000", "urn:oid:2.25.3001", "urn:oid:2.25.3002"]
