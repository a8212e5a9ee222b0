"""Log lines cannot be forged (issue 10, item 10): every line the real server writes is one JSON
object, and what a request carries (a `%0A` in its path) stays inside one field of one line."""

from __future__ import annotations

import json

import httpx

from test_tls_server import Server, free_port

FORGED = "/fhir/x%0A2026-12-01 INFO epr.gateway.exchanges.access 10.0.0.1 GET /fhir/admin 200 0.1ms%0D%0A{\"level\":\"INFO\"}"


def test_every_log_line_is_json_and_a_newline_in_the_path_stays_in_its_field(tmp_path):
    server = Server(tmp_path / "data", free_port())
    try:
        with httpx.Client(verify=server.client_context(with_certificate=True), timeout=5) as client:
            assert client.get(server.base + FORGED).status_code == 404
            assert client.get(server.base + "/health/live").status_code == 200
    finally:
        log = server.stop()

    lines = [line for line in log.splitlines() if line.strip()]
    # The output merges stdout, where the development banner greets the operator in plain text, and
    # stderr, the log: every line that opens like a log record must be a whole JSON record.
    records = [json.loads(line) for line in lines if line.startswith("{")]
    access = [r for r in records if r["logger"] == "epr.gateway.exchanges.access" and r["path"] != "/health/ready"]
    assert [(r["method"], r["path"], r["status"]) for r in access] == [
        ("GET", "/fhir/x\n2026-12-01 INFO epr.gateway.exchanges.access 10.0.0.1 GET /fhir/admin 200 0.1ms\r\n"
                '{"level":"INFO"}', 404),
        ("GET", "/health/live", 200)]
    assert all(set(r) >= {"time", "level", "logger", "message"} for r in records)
    assert not any(line.startswith("2026-12-01") or line.startswith('{"level"') for line in lines)
