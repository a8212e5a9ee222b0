"""One ACK table for the HL7 v2 face: every acknowledgement is built in `gateway/mllp/acks.py`.

Another module of the face (the channel, the door that refuses frames unread, the listener) passes an
outcome to `acks.answer`; it does not call the byte writer (`adapters.infomed.hl7v2.acks.build_ack`)
itself — that is how six places came to answer the same case six ways."""

from __future__ import annotations

import ast

from adapters.infomed.hl7v2.message import Message
from gateway.mllp.door import refusal_ack
from source_tree import product_modules

TABLE = "gateway.mllp.acks"
WRITER = "build_ack"


def ack_builders(source: str) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and any(alias.name == WRITER for alias in node.names):
            found.append(f"line {node.lineno}: imports {WRITER}")
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name == WRITER:
                found.append(f"line {node.lineno}: calls {WRITER}")
    return found


def test_no_module_of_the_hl7_face_but_the_table_builds_an_ack():
    modules = {name: path for name, path in product_modules().items()
               if (name.startswith("gateway.mllp") or name.startswith("gateway.exchanges.message"))
               and name != TABLE}
    assert modules, "the HL7 v2 face's modules were not found"
    found = {name: ack_builders(path.read_text()) for name, path in modules.items()}
    assert {name: builders for name, builders in found.items() if builders} == {}


def test_the_check_finds_a_planted_builder():
    planted = ("from adapters.infomed.hl7v2.acks import build_ack\n"
               "def refuse(message):\n"
               "    return hl7_acks.build_ack(message, 'AE', text='no')\n")
    assert ack_builders(planted) == ["line 1: imports build_ack", "line 3: calls build_ack"]


def _answer(ack: bytes) -> tuple[str, str, str]:
    message = Message.parse(ack)
    msa, err = message.require("MSA"), message.first("ERR")
    return msa.value(1), msa.value(2), err.raw(3) if err is not None else ""


def test_a_frame_refused_unread_is_answered_through_the_table():
    head = b"MSH|^~\\&|RIS|HOSP|EPR|CARA|20250101120000||MDM^T02|ctl-7|P|2.5\rEVN|T02\r"
    too_big = _answer(refusal_ack(head, "frame over 10 MB", later=False))
    busy = _answer(refusal_ack(head, "too much held across connections", later=True))
    assert too_big[:2] == ("AE", "ctl-7")
    assert busy[:2] == ("AR", "ctl-7")
    assert too_big[2].startswith("207") and busy[2].startswith("207")  # 0357 application error
    unreadable = Message.parse(refusal_ack(b"\x00\x01 not HL7", "frame over 10 MB", later=False))
    assert unreadable.require("MSA").value(1) == "AE"
