"""The MLLP listener on an ephemeral port beside the test gateway, and a plain-socket MLLP client."""

from __future__ import annotations

import asyncio
import base64
import json
import socket
import ssl
import threading
from contextlib import contextmanager
from pathlib import Path

from conftest import HCP_GLN, LOCAL_SYSTEM, SPID, running_gateway
from gateway.mllp.framing import END, START
from gateway.wiring import mllp_listener

HOSPITAL = "HOPITAL-SION"
TIMEOUT = 20


def senders_file(directory: Path, *extra: dict) -> Path:
    """A senders file: the test hospital (PID-3 ids without authority are LOCAL_SYSTEM ids), plus `extra`."""
    path = directory / "senders.json"
    senders = [{"facility": HOSPITAL, "user_id": "hopital-sion-feed", "principal_gln": HCP_GLN,
                "assigning_authority": LOCAL_SYSTEM}, *extra]
    path.write_text(json.dumps({"senders": senders}), encoding="utf-8")
    return path


@contextmanager
def running_listener(runtime, *, ssl_context=None):
    """(host, port) of a listener running on its own event loop thread; stopped on exit."""
    with started_listener(runtime, ssl_context=ssl_context) as (_, address):
        yield address


@contextmanager
def started_listener(runtime, *, ssl_context=None):
    """(listener, (host, port)), the listener running on its own event loop thread; stopped on exit."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    listener = mllp_listener(runtime, port=0)
    if ssl_context is not None:
        listener.ssl_context = ssl_context
    try:
        address = asyncio.run_coroutine_threadsafe(listener.start(), loop).result(TIMEOUT)
        yield listener, address
    finally:
        asyncio.run_coroutine_threadsafe(listener.stop(), loop).result(TIMEOUT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(TIMEOUT)
        loop.close()


class MllpClient:
    def __init__(self, address, *, context: ssl.SSLContext | None = None):
        raw = socket.create_connection(address, timeout=TIMEOUT)
        self.sock = context.wrap_socket(raw, server_hostname="localhost") if context else raw
        self._buffer = b""

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send(self, message: bytes) -> bytes:
        self.sock.sendall(START + message + END)
        return self.ack()

    def ack(self) -> bytes:
        while END not in self._buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before an ACK")
            self._buffer += chunk
        frame, _, self._buffer = self._buffer.partition(END)
        assert frame.startswith(START), frame[:20]
        return frame[1:]

    def close(self) -> None:
        self.sock.close()


def ack_fields(ack: bytes, codec: str = "utf-8") -> dict[str, list[str]]:
    """Segment name → its fields (MSH numbered like the others: fields[1] is MSH-2)."""
    return {line[:3]: line.split("|") for line in ack.decode(codec).split("\r") if line}


def mdm(*, control_id: str, unique_id: str, local_id: str = "L-1", trigger: str = "T02", parent: str = "",
        content: bytes = b"%PDF-1.4 test", facility: str = HOSPITAL, encoding: str = "Base64",
        data: str | None = None, charset: str = "", family: str = "Muster", given: str = "Anna",
        doc_type: str = "DS", confidentiality: str = "", title: str = "Lettre de sortie",
        separator: str = "\r", birth: str = "19800517", sex: str = "F", sent: str = "20261120100000+0100",
        activity: str = "20261120093000+0100") -> str:
    """An MDM message (text; encode it as the test needs). `sent` is MSH-7, `activity` TXA-4."""
    data = base64.b64encode(content).decode() if data is None else data
    segments = [
        f"MSH|^~\\&|KIS|{facility}|EPR|EPR|{sent}||MDM^{trigger}^MDM_T02|{control_id}|P|2.5|||||CHE|{charset}",
        "EVN|T02|20261120100000+0100",
        f"PID|1||{local_id}||{family}^{given}||{birth}|{sex}",
        "PV1|1|I",
        f"TXA|1|{doc_type}|AP|{activity}|||||7601000000002^Favre^Luc|||{unique_id}|{parent}||||AU|{confidentiality}|AV||||||{title}",
        f"OBX|1|ED|DOC^Document||^application^pdf^{encoding}^{data}||||||F",
    ]
    return separator.join(segments) + separator


@contextmanager
def running_bridge(tmp_path: Path, database_url: str, *extra_senders: dict):
    """(gateway, MLLP address): the test patient registered (and granting the test HCP), the listener
    running with the test hospital (and `extra_senders`) in its senders file."""
    with running_gateway(tmp_path, database_url, mllp_senders=senders_file(tmp_path, *extra_senders)) as gateway:
        gateway.register_patient()
        with running_listener(gateway.runtime) as address:
            yield gateway, address


def send_one(address, message: bytes) -> bytes:
    """One message on a connection of its own; its ACK."""
    client = MllpClient(address)
    try:
        return client.send(message)
    finally:
        client.close()


def send_together(address, messages: list[bytes]) -> list[bytes]:
    """Each message on its own connection, all sent before any ACK is read: they share a group commit."""
    clients = [MllpClient(address) for _ in messages]
    try:
        for client, message in zip(clients, messages, strict=True):
            client.send_raw(START + message + END)
        return [client.ack() for client in clients]
    finally:
        for client in clients:
            client.close()


def stored_unique_ids(gateway, spid: str = SPID) -> set[str]:
    """The uniqueIds ITI-67 finds for the test HCP."""
    response = gateway.find(spid, _count="100")
    assert response.status_code == 200, response.text
    return {e["resource"]["masterIdentifier"]["value"] for e in response.json().get("entry", [])}


def cli_environment(monkeypatch, gateway) -> None:
    """The command line (CliRunner) on this gateway's data, database and senders file."""
    settings = gateway.runtime.settings
    for name, value in (("EPR_DATA_DIR", settings.data_dir), ("EPR_DATABASE_URL", settings.database_url),
                        ("EPR_MLLP_SENDERS", settings.mllp_senders), ("EPR_DEMO_DATA", "false")):
        monkeypatch.setenv(name, str(value))
