"""The operator's commands (issue 24 items 1 and 6): a communities file that cannot be used is one line
and exit 2 for every command that builds the runtime; `deliver --once`; `outbox status [--json]`,
`outbox show UNIQUEID`, `outbox retry [--failed] [UNIQUEID…]`; the migration's report and `migrate
status` name each document's delivery state."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from conftest import sqlite_url
from functional.delivery_helpers import delivering_world
from functional.test_first_hour import run_cli
from functional.test_relabelled_documents import xdm_media
from gateway.samples import new_oid_unique_id, pdf_document

SNOMED = "2.16.840.1.113883.6.96"


def _community_file(tmp_path, stub_config: dict, **changes) -> str:
    config = {**stub_config, **changes}
    for key in [k for k, v in changes.items() if v is None]:
        del config[key]
    path = tmp_path / "bad-communities.json"
    path.write_text(json.dumps([config]), encoding="utf-8")
    return str(path)


@pytest.fixture
def root_logging_kept():
    """`serve` configures logging onto the stderr of its moment (capsys's, closed after the test): the
    root logger's handlers are given back so later tests do not write into a closed stream."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


@pytest.mark.usefixtures("root_logging_kept")
@pytest.mark.parametrize("command", [("serve",), ("deliver", "--once"), ("outbox", "status"), ("migrate", "status"),
                                     ("bridge", "held")])
@pytest.mark.parametrize(("problem", "says"), [
    ("missing file", "no such file (EPR_COMMUNITIES)"),
    ("missing key", "community lacks iti41_url"),
    ("bad endpoint", "iti45_pix_url 'http://127.0.0.1:1/pix' must be an https:// URL"),
    ("missing key file", "technical_user.key"),
    ("delivery without communities", "EPR_DELIVERY=forward-only needs EPR_COMMUNITIES"),
])
def test_a_communities_file_that_cannot_be_used_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, command,
                                                                       problem, says):
    with delivering_world(tmp_path, sqlite_url(tmp_path), register=False) as world:
        config = world.stub.community_config()
    env = {"missing file": lambda: {"EPR_COMMUNITIES": str(tmp_path / "nowhere.json")},
           "missing key": lambda: {"EPR_COMMUNITIES": _community_file(tmp_path, config, iti41_url=None)},
           "bad endpoint": lambda: {"EPR_COMMUNITIES": _community_file(tmp_path, config,
                                                                       iti45_pix_url="http://127.0.0.1:1/pix")},
           "missing key file": lambda: {"EPR_COMMUNITIES": _community_file(tmp_path, config, technical_user={
               **config["technical_user"], "key": str(tmp_path / "gone.pem")})},
           "delivery without communities": lambda: {"EPR_DELIVERY": "forward-only"}}[problem]()

    code, out, err = run_cli(capsys, monkeypatch, tmp_path, *command, **env)

    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err


def _operator_env(monkeypatch, world) -> None:
    settings = world.runtime.settings
    monkeypatch.setenv("EPR_DATABASE_URL", settings.resolved_database_url)
    monkeypatch.setenv("EPR_COMMUNITIES", str(world.communities_file))
    monkeypatch.setenv("EPR_DELIVERY_RETRY_SECONDS", "0.05")


def test_status_show_retry_and_deliver_once_from_the_command_line(capsys, monkeypatch, tmp_path):
    with delivering_world(tmp_path, sqlite_url(tmp_path)) as world:
        _operator_env(monkeypatch, world)
        world.stub.codes.remove("typeCode", "373942005", SNOMED)
        world.provide({"title": "Letter"}, {"title": "Report"})
        unique_id = world.rows()[0]["unique_id"]

        before = json.loads(run_cli(capsys, monkeypatch, tmp_path, "outbox", "status", "--json")[1])
        delivered = run_cli(capsys, monkeypatch, tmp_path, "deliver", "--once")
        status = run_cli(capsys, monkeypatch, tmp_path, "outbox", "status")
        shown = run_cli(capsys, monkeypatch, tmp_path, "outbox", "show", unique_id)
        world.stub.codes.add("typeCode", "373942005", SNOMED)
        retried = run_cli(capsys, monkeypatch, tmp_path, "outbox", "retry", unique_id)
        again = run_cli(capsys, monkeypatch, tmp_path, "deliver", "--once")
        after = json.loads(run_cli(capsys, monkeypatch, tmp_path, "outbox", "status", "--json")[1])
        unknown = run_cli(capsys, monkeypatch, tmp_path, "outbox", "show", "urn:oid:2.25.1")
        nothing = run_cli(capsys, monkeypatch, tmp_path, "outbox", "retry")

        [community] = before["communities"]
        assert (before["mode"], community["community"], community["states"]["pending"]) == (
            "store-and-forward", "cara", 2)
        assert community["oldest_pending_seconds"] >= 0
        assert delivered[:2] == (0, "2 delivery attempts recorded\n")
        assert status[1].splitlines() == ["delivery: store-and-forward", "cara: 2 failed"]
        assert "XDSRegistryMetadataError" in shown[1] and "#1" in shown[1] and "rejected at normal" in shown[1]
        assert retried[:2] == (0, "1 deliveries due again\n")
        assert again[:2] == (0, "1 delivery attempts recorded\n")
        assert {s: n for s, n in after["communities"][0]["states"].items() if n} == {"delivered": 1, "failed": 1}
        assert after["communities"][0]["oldest_pending_seconds"] is None
        assert (unknown[0], "no delivery of urn:oid:2.25.1" in unknown[2]) == (1, True)
        assert (nothing[0], "name documents (uniqueId) or give --failed" in nothing[2]) == (2, True)


def test_the_migration_report_and_status_name_each_documents_delivery_state(capsys, monkeypatch, tmp_path):
    with delivering_world(tmp_path, sqlite_url(tmp_path)) as world:
        _operator_env(monkeypatch, world)
        documents = [{"entry_uuid": f"urn:uuid:{uuid.uuid4()}", "unique_id": new_oid_unique_id(),
                      "content": pdf_document("Rapport", [str(n)])} for n in range(2)]
        media = xdm_media(tmp_path / "media-1", documents)
        report_file = tmp_path / "report.json"

        migrated = run_cli(capsys, monkeypatch, tmp_path, "migrate", str(media), "--as-gln", "7601000000002",
                           "--workers", "0", "--report", str(report_file), "--no-progress")
        pending = json.loads(report_file.read_text())
        world.stub.codes.codes["typeCode"].clear()  # the community refuses both: an operator must look
        run_cli(capsys, monkeypatch, tmp_path, "deliver", "--once")
        status = run_cli(capsys, monkeypatch, tmp_path, "migrate", "status")

        assert migrated[0] == 0 and migrated[1].endswith("\n  delivery to cara: 2 pending\n")
        assert [d["delivery"] for d in pending["documents"]] == [{"cara": "pending"}, {"cara": "pending"}]
        assert pending["deliveries"] == {"cara": {"pending": 2}}
        sources = [d["source"] for d in pending["documents"]]
        assert status[1].splitlines() == [
            "0 documents held", "2 migrated documents in the record; their delivery:",
            "  delivery to cara: 2 failed",
            *(f"  {source}\t{document['unique_id']}\tcara: failed" for source, document in zip(sources, documents))]
