"""The scale-out invariants under load (issue 26 item 1), not timed: bench/bench_scale.py's mixed window —
ITI-65 provides, ITI-67 searches, ITI-68 reads, PPQ-3/5 consent changes, ITI-81 trail reads and HL7 v2
messages at once — against real `epr-gateway serve` processes on PostgreSQL + Redis: one node with two
workers, and two nodes (two `serve` processes, the same database, Redis and keys). While it runs, the
probe patient's grant is revoked through one node and read at once on several connections to every
worker and node, ITI-67 pages are walked across the nodes while documents arrive, and afterwards every
ITI-65 answered 200 and every HL7 v2 message answered AA is counted in the database.

The control (two nodes without Redis, where each node keeps its own policy cache) shows that the probe
does find stale decisions when there are some."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from conftest import fresh_postgres_url

pytestmark = pytest.mark.postgres
BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_scale.py"


def redis_db(number: int) -> str:
    """A Redis database of the test server of its own (the benchmark flushes the one it is given)."""
    url = os.environ.get("EPR_TEST_REDIS_URL")
    if not url:
        pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
    return urlunsplit(urlsplit(url)._replace(path=f"/{number}"))


def mixed_window(tmp_path: Path, *options: str) -> dict:
    out = tmp_path / "scale.json"
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EPR_")}
    finished = subprocess.run(
        [sys.executable, str(BENCH), "--invariants-only", "--seconds", "4", "--rounds", "1", "--patients", "3",
         "--docs", "9", "--database-url", fresh_postgres_url(), "--redis-url", redis_db(7), "--json", str(out),
         *options], env=environment, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]
    return json.loads(out.read_text())["invariants"]


def test_several_workers_and_two_nodes_keep_the_invariants_under_the_mixed_load(tmp_path):
    invariants = mixed_window(tmp_path, "--configs", "w2,nodes2")

    for config in ("w2", "nodes2"):
        [checked] = invariants[config]
        assert checked["probe_failures"] == [], config
        assert (checked["server_errors"], checked["stale_decisions"], checked["late_grants"]) == (0, 0, 0), config
        assert checked["revocations"] >= 1 and checked["decisions_checked"] >= 2 * checked["revocations"], config
        assert (checked["repeats"], checked["skips"]) == (0, 0), config
        assert checked["pages_walked"] >= 2 and checked["paged_documents"] >= 3, config
        assert checked["provides_acknowledged"] >= 1 and checked["provides_not_stored_once"] == 0, config
        assert checked["mllp_acknowledged"] >= 1 and checked["mllp_not_stored_once"] == 0, config
        assert set(checked["mllp_answers"]) == {"AA"}, config


def test_the_probe_finds_stale_decisions_where_nodes_do_not_share_redis(tmp_path):
    invariants = mixed_window(tmp_path, "--configs", "nodes2", "--no-redis")

    [checked] = invariants["nodes2"]
    assert checked["revocations"] >= 1
    assert checked["stale_decisions"] >= 1  # the other node still serves its cached grant
