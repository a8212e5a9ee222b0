"""The newcomer's first hour: the command line's mistakes are one line and exit 2, `serve` listens before
it announces anything, `token` mints for the gateway that runs, the banner's promises hold."""

from __future__ import annotations

import json
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from gateway.cli import main
from gateway.pki import ensure_dev_pki
from gateway.running_note import read_note

ROOT = Path(__file__).resolve().parents[2]
DEMO_SEARCH = "urn:oid:2.16.756.5.30.1.127.3.10.3|761337610430891416"


def run_cli(capsys, monkeypatch, tmp_path, *args: str, **env: str) -> tuple[int, str, str]:
    monkeypatch.setenv("EPR_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    out, err = capsys.readouterr()
    return exited.value.code, out, err


@pytest.mark.parametrize("args, says", [
    (("token", "--role", "XYZ"), "'XYZ' is not a role; one of ASS, DADM, HCP, PADM, PAT, REP, TCU"),
    (("token", "--role", "HCP"), "a HCP token needs --gln"),
    (("token", "--role", "PAT"), "a PAT token needs --spid (the patient's EPR-SPID)"),
    (("token", "--role", "TCU", "--principal-gln", "7601000000002"), "a TCU token needs --user-id"),
    (("token", "--role", "HCP", "--gln", "7601000000002", "--ttl", "-5"), "-5 is not a positive number of seconds"),
    (("token", "--role", "HCP", "--gln", "7601000000003"), "'7601000000003' is not a GLN (13 digits, GS1 check digit)"),
    (("token", "--role", "HCP", "--gln", "7601000000002", "--purpose", "FUN"), "'FUN' is not a purpose of use"),
    (("token", "--role", "PAT", "--spid", "1234"), "'1234' is not an EPR-SPID (18 digits)"),
    (("token", "--role", "PAT", "--spid", "761337610411353650", "--purpose", "EMER"),
     "the gateway would refuse this token: purpose of use EMER is reserved to HCP and ASS, not PAT"),
    (("token", "--role", "TCU", "--user-id", "mig"),
     "the gateway would refuse this token: missing claim extensions.ch_delegation.principal_id (required for TCU)"),
    (("audit", "export", "--since", "notadate"), "'notadate' is not an ISO date or date-time"),
    (("token", "--rol", "HCP"), "No such option: --rol"),
])
def test_every_command_line_mistake_is_one_line_and_exit_2(capsys, monkeypatch, tmp_path, args, says):
    code, out, err = run_cli(capsys, monkeypatch, tmp_path, *args)

    assert (code, out) == (2, "")
    assert err.count("\n") == 1 and says in err, err
    assert "Traceback" not in err


def test_a_bad_setting_names_the_variable_and_its_value_in_one_line(capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(capsys, monkeypatch, tmp_path, "token", "--role", "HCP", "--gln", "7601000000002",
                             EPR_PORT="notaport")

    assert (code, out) == (2, "")
    assert err == ("epr-gateway token: EPR_PORT='notaport': Input should be a valid integer, "
                   "unable to parse string as an integer\n")


def test_the_installed_entry_point_answers_a_bad_setting_without_a_traceback(tmp_path):
    done = subprocess.run([sys.executable, "-c", "from gateway.cli import main; main()", "audit", "verify"],
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                               "EPR_PORT": "notaport"}, capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.startswith("epr-gateway audit verify: EPR_PORT='notaport'") and done.stderr.count("\n") == 1


def test_a_valid_token_is_minted_and_says_for_which_issuer(capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(capsys, monkeypatch, tmp_path, "token", "--role", "hcp", "--gln", "7601000000002")

    comment, token = out.splitlines()
    assert (code, err) == (0, "")
    assert comment == "# DEVELOPMENT token for HCP, valid 3600 s, for issuer https://127.0.0.1:8443/dev-issuer"
    assert token.count(".") == 2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def serve(tmp_path: Path, port: int, **env: str) -> subprocess.Popen:
    environment = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"),
                   "EPR_DATA_DIR": str(tmp_path / "data"), "EPR_PORT": str(port),
                   "EPR_AUDIENCE": f"https://127.0.0.1:{port}/fhir", **env}
    return subprocess.Popen([sys.executable, "-c", "from gateway.cli import main; main()", "serve"],
                            env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def test_a_busy_port_is_one_line_naming_the_setting_and_exit_2_before_any_banner(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(tmp_path, port)
        out, err = process.communicate(timeout=60)

    assert process.returncode == 2  # a setting's mistake, like any other (EPR_PORT)
    assert "Example tokens" not in out
    assert err.splitlines()[-1] == (f"epr-gateway serve: cannot listen on 127.0.0.1:{port}: Address already in use "
                                    "(another program listens there: set EPR_PORT to a free port, e.g. "
                                    "EPR_PORT=8444 make run)")
    assert "Traceback" not in err and "Warning" not in err


def test_token_from_another_shell_is_for_the_running_gateway_and_the_banner_tells_the_truth(tmp_path, monkeypatch):
    port = free_port()
    tls = ssl.create_default_context(cafile=str(ensure_dev_pki(tmp_path / "data" / "pki").ca_cert))
    process = serve(tmp_path, port)
    try:
        deadline = time.monotonic() + 60
        ready = False
        while not ready and time.monotonic() < deadline and process.poll() is None:
            try:
                ready = httpx.get(f"https://127.0.0.1:{port}/health/ready", verify=tls, timeout=2).status_code == 200
            except (httpx.HTTPError, OSError):
                time.sleep(0.2)
        assert ready, process.stderr.read() if process.poll() is not None else "not ready"
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        seen = {}
        for role, options in (("HCP", ["--gln", "7601000000002"]), ("PAT", ["--spid", "761337610430891416"]),
                              ("TCU", ["--user-id", "mig", "--principal-gln", "7601000000002"])):
            minted = subprocess.run(
                [sys.executable, "-c", "from gateway.cli import main; main()", "token", "--role", role, *options],
                env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home")},
                capture_output=True, text=True, timeout=60, cwd=elsewhere)
            assert minted.returncode == 0, minted.stderr
            assert minted.stdout.splitlines()[0].endswith(f"for the gateway running at https://127.0.0.1:{port}/fhir")
            answer = httpx.get(f"https://127.0.0.1:{port}/fhir/DocumentReference", verify=tls, timeout=10,
                               params={"patient.identifier": DEMO_SEARCH},
                               headers={"Authorization": f"Bearer {minted.stdout.splitlines()[-1]}"})
            assert answer.status_code == 200, answer.text
            seen[role] = answer.json()["total"]
        # A port set in the shell wins over the running gateway: that shell meant another gateway.
        explicit = subprocess.run(
            [sys.executable, "-c", "from gateway.cli import main; main()", "token", "--role", "HCP", "--gln",
             "7601000000002"], env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path / "home"),
                                    "EPR_PORT": "9"}, capture_output=True, text=True, timeout=60, cwd=elsewhere)
        assert explicit.returncode == 0, explicit.stderr
        assert explicit.stdout.splitlines()[0].endswith("for issuer https://127.0.0.1:9/dev-issuer"), explicit.stdout
        refused = httpx.get(f"https://127.0.0.1:{port}/fhir/DocumentReference", verify=tls, timeout=10,
                            params={"patient.identifier": DEMO_SEARCH},
                            headers={"Authorization": f"Bearer {explicit.stdout.splitlines()[-1]}"})
        assert refused.status_code == 401
        hcp_page = httpx.get(f"https://127.0.0.1:{port}/hcp/sign-in", verify=tls, timeout=10,
                             headers={"Accept-Language": "en"})
        assert hcp_page.status_code == 200 and "Dr. Demo Favre" in hcp_page.text  # the banner's demo professional
    finally:
        process.terminate()
        out, _ = process.communicate(timeout=30)

    from gateway.demo import DEMO_VIEWS
    assert seen == {role: view.documents for role, view in DEMO_VIEWS.items()}
    for role, view in DEMO_VIEWS.items():
        assert f"{role} ({view.says}):" in out
    assert f"physicians' page: https://127.0.0.1:{port}/hcp " in out
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert read_note(tmp_path / "data") is None  # the stopped gateway's note no longer counts


def test_the_demonstration_documents_name_the_mpi_patient_with_one_display_per_type(sqlite_gateway):
    from gateway.demo import DEMO_FAMILY, DEMO_GIVEN, DEMO_SPID, load_demo_data

    services = sqlite_gateway.services
    assert load_demo_data(documents=services.exchange, identities=services.identities, policies=services.policies,
                          base_url="https://testserver/fhir")
    patient = sqlite_gateway.services.exchange.patients.pid_for_spid(DEMO_SPID)
    found = sqlite_gateway.client.get("/fhir/DocumentReference", params={"patient.identifier": DEMO_SEARCH},
                                      headers=sqlite_gateway.tokens.headers(sqlite_gateway.tokens.patient(DEMO_SPID)))

    documents = [entry["resource"] for entry in found.json()["entry"]]
    sources = [next(c for c in d["contained"] if c["resourceType"] == "Patient") for d in documents]
    types = {d["type"]["coding"][0]["code"]: d["type"]["coding"][0]["display"] for d in documents}
    assert patient is not None
    assert {(s["name"][0]["family"], s["name"][0]["given"][0], s["identifier"][0]["value"]) for s in sources} == {
        (DEMO_FAMILY, DEMO_GIVEN, "DEMO-0001")}
    assert types == {"373942005": "Discharge summary", "4241000179101": "Laboratory report",
                     "371530004": "Clinical consultation report"}
