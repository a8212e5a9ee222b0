"""The metrics of `epr-gateway serve` with several worker processes: requests spread over the workers
(a new connection each), one scrape of the metrics listener, and the counts add up — per worker in its own
file, summed by the scrape, equal to what the client did. `promtool check metrics` passes on the output,
no label carries a patient id, a GLN, a document id or a token, and a worker killed by the operating
system is handled as the library asks (its live gauges go, its counts stay)."""

from __future__ import annotations

import glob
import json
import os
import shutil
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict

from functional.serving import DEMO_SEARCH, ServingGateway, provide_letter, sample
from gateway.demo import DEMO_GLN, DEMO_SPID

WORKERS = 3


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    with ServingGateway(tmp_path_factory.mktemp("metrics") / "data", workers=WORKERS) as serving:
        yield serving


def per_process(directory: Path, name: str, labels: dict) -> dict[int, float]:
    """The value each process wrote for one series (its own file: counter_<pid>.db)."""
    found = {}
    for path in glob.glob(str(directory / "counter_*.db")):
        pid = int(Path(path).stem.split("_")[1])
        for key, value, _timestamp, _pos in MmapedDict.read_all_values_from_file(path):
            _metric, sample_name, sample_labels, _help = json.loads(key)
            if sample_name == name and sample_labels == labels:
                found[pid] = found.get(pid, 0.0) + value
    return found


def metrics_directory(gateway: ServingGateway) -> Path:
    return gateway.data_dir.resolve() / "metrics" / str(gateway.process.pid)


def test_counts_add_up_across_worker_processes(gateway):
    before = gateway.scrape()
    headers = gateway.hcp()
    with gateway.client() as client:
        provided = [provide_letter(client, headers, f"Letter {n}")[0] for n in range(4)]

    def search(_):
        with gateway.client(keep_alive=False) as client:
            return client.get("/fhir/DocumentReference", params={"patient.identifier": DEMO_SEARCH},
                              headers=headers).status_code

    def read(entry_id):
        with gateway.client(keep_alive=False) as client:
            return client.get(f"/fhir/Binary/{entry_id}", headers=headers).status_code

    with ThreadPoolExecutor(6) as pool:
        searches = list(pool.map(search, range(36)))
        reads = list(pool.map(read, provided * 6))
    with gateway.client() as client:  # refused: a patient's token names another patient
        other = gateway.token(role="PAT", spid="761337610499999991", name="Someone Else")
        refused = client.get("/fhir/DocumentReference", params={"patient.identifier": DEMO_SEARCH},
                             headers={"Authorization": f"Bearer {other}"}).status_code
    after = gateway.scrape()

    assert (set(searches), set(reads), refused) == ({200}, {200}, 403)

    def delta(name, **labels):
        return sample(after, name, **labels) - sample(before, name, **labels)

    assert delta("epr_http_requests_total", route="/fhir/DocumentReference", method="GET", status="200") == 36
    assert delta("epr_http_requests_total", route="/fhir/DocumentReference", method="GET", status="403") == 1
    assert delta("epr_http_requests_total", route="/fhir/Binary/{entry_id}", method="GET", status="200") == 24
    assert delta("epr_http_requests_total", route="/fhir", method="POST", status="200") == 4
    assert delta("epr_http_request_duration_seconds_count", route="/fhir/Binary/{entry_id}", method="GET") == 24
    assert delta("epr_exchanges_total", transaction="ITI-67", outcome="success") == 36
    assert delta("epr_exchanges_total", transaction="ITI-67", outcome="minor-failure") == 1
    assert delta("epr_exchanges_total", transaction="ITI-68", outcome="success") == 24
    assert delta("epr_exchanges_total", transaction="ITI-65", outcome="success") == 4
    assert delta("epr_consent_decisions_total", action="read", result="permit") >= 24
    assert delta("epr_consent_decisions_total", action="write", result="permit") >= 4
    assert delta("epr_audit_batch_records_sum") >= 4 + 36 + 24 + 1

    # each worker counted its own share in its own file; the scrape is their sum
    iti67 = per_process(metrics_directory(gateway), "epr_exchanges_total",
                        {"transaction": "ITI-67", "outcome": "success"})
    assert len([pid for pid, count in iti67.items() if count]) >= 2, iti67  # spread over the workers
    assert set(iti67) <= gateway.worker_pids() | {gateway.process.pid}
    assert sum(iti67.values()) == sample(after, "epr_exchanges_total", transaction="ITI-67", outcome="success")

    # bounded labels: templates, never the ids, the patient, the professional or a token
    text = gateway.scrape_text()
    assert 'route="/fhir/Binary/{entry_id}"' in text
    for value in (*provided, DEMO_SPID, DEMO_GLN, headers["Authorization"].split()[1][:40], "Bearer"):
        assert value not in text


def test_promtool_check_metrics_passes(gateway):
    assert shutil.which("promtool"), "promtool (Debian prometheus) is installed by scripts/test_services.sh"
    checked = subprocess.run(["promtool", "check", "metrics"], input=gateway.scrape_text(), capture_output=True,
                             text=True, timeout=60)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_the_store_state_is_read_at_each_scrape(gateway):
    scraped = gateway.scrape()

    for source in ("mllp-held", "migration", "witness"):
        assert sample(scraped, "epr_metrics_source_up", source=source) == 1, source
    assert sample(scraped, "epr_mllp_held_messages") == 0
    assert ("epr_audit_witness_lag_records", ()) in scraped


def test_a_worker_killed_is_handled_as_the_library_asks(gateway):
    headers = gateway.hcp()

    def search(_):
        with gateway.client(keep_alive=False) as client:
            client.get("/fhir/DocumentReference", params={"patient.identifier": DEMO_SEARCH}, headers=headers)

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(search, range(12)))
    directory = metrics_directory(gateway)
    before = gateway.scrape()
    counted = per_process(directory, "epr_exchanges_total", {"transaction": "ITI-67", "outcome": "success"})
    victim = max((pid for pid in counted if pid in gateway.worker_pids()), key=lambda pid: counted[pid])
    assert os.path.exists(directory / f"gauge_livesum_{victim}.db")

    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while (victim in gateway.worker_pids() or len(gateway.worker_pids()) < WORKERS) and time.monotonic() < deadline:
        time.sleep(0.2)
    gateway.wait_ready()
    after = gateway.scrape()

    assert len(gateway.worker_pids()) == WORKERS  # the supervisor started another
    assert not os.path.exists(directory / f"gauge_livesum_{victim}.db")  # mark_process_dead at the scrape
    assert os.path.exists(directory / f"counter_{victim}.db")  # its counts stay in the sums
    assert sample(after, "epr_exchanges_total", transaction="ITI-67", outcome="success") == \
        sample(before, "epr_exchanges_total", transaction="ITI-67", outcome="success")


def test_an_explicit_metrics_address_that_is_taken_refuses_the_start_in_one_line(tmp_path):
    import socket
    import sys

    from functional.serving import ROOT, free_port

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", "serve"],
                              env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                                   "EPR_DATA_DIR": str(tmp_path / "data"), "EPR_PORT": str(free_port()),
                                   "EPR_METRICS_ADDRESS": f"127.0.0.1:{port}", "EPR_DEMO_DATA": "false"},
                              capture_output=True, text=True, timeout=120)

    assert done.returncode == 2
    assert done.stderr.splitlines()[-1].startswith(f"epr-gateway serve: EPR_METRICS_ADDRESS=127.0.0.1:{port}: "
                                                   "cannot listen (Address already in use)")
    assert "Traceback" not in done.stderr
