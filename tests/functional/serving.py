"""`epr-gateway serve` as an operator runs it: a real process with several uvicorn workers on loopback
(TLS, the development PKI and issuer, the demonstration patient), its metrics listener, and the commands
an operator runs beside it (`epr-gateway keys …`, `backup`, `check-restore`) with the same settings."""

from __future__ import annotations

import hashlib
import os
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson
from prometheus_client.parser import text_string_to_metric_families

from gateway.auth.dev_issuer import mint_token
from gateway.demo import DEMO_FAMILY, DEMO_GIVEN, DEMO_GLN, DEMO_SPID
from gateway.pki import ensure_dev_pki
from gateway.samples import pdf_document, provide_bundle

ROOT = Path(__file__).resolve().parents[2]
DEMO_SEARCH = f"urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"
CLI = [sys.executable, "-c", "from gateway.cli import main; main()"]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class ServingGateway:
    def __init__(self, data_dir: Path, *, workers: int, **env: str):
        self.data_dir = data_dir
        self.port, self.mllp_port, self.metrics_port = free_port(), free_port(), free_port()
        self.base = f"https://127.0.0.1:{self.port}"
        self.tls = ssl.create_default_context(cafile=str(ensure_dev_pki(data_dir / "pki").ca_cert))
        self.env = {"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(data_dir.parent / "home"),
                    "EPR_DATA_DIR": str(data_dir), "EPR_PORT": str(self.port), "EPR_MLLP_PORT": str(self.mllp_port),
                    "EPR_METRICS_ADDRESS": f"127.0.0.1:{self.metrics_port}", "EPR_AUDIENCE": f"{self.base}/fhir",
                    "EPR_WORKERS": str(workers), **env}
        self.log = data_dir.parent / f"serve-{self.port}.log"
        data_dir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen([*CLI, "serve"], env=self.env, stdout=self.log.open("wb"),
                                        stderr=subprocess.STDOUT)
        self.wait_ready()

    def __enter__(self) -> ServingGateway:
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def wait_ready(self, seconds: float = 90) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log.read_text()
            try:
                if httpx.get(f"{self.base}/health/ready", verify=self.tls, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError("the gateway did not become ready: " + self.log.read_text())

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=60)

    def cli(self, *args: str, check: bool = True, **env: str) -> subprocess.CompletedProcess:
        done = subprocess.run([*CLI, *args], env={**self.env, **env}, capture_output=True, text=True, timeout=600)
        assert not check or done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done

    # -- clients -------------------------------------------------------------------------------------
    def token(self, **claims) -> str:
        return mint_token(data_dir=self.data_dir, issuer_url=f"{self.base}/dev-issuer", audience=f"{self.base}/fhir",
                          **claims)

    def hcp(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(role='HCP', gln=DEMO_GLN, name='Dr. Demo Favre')}",
                "Content-Type": "application/fhir+json"}

    def client(self, *, keep_alive: bool = True) -> httpx.Client:
        """keep_alive=False: a new connection per request, so that the kernel hands them to every worker."""
        limits = httpx.Limits(max_keepalive_connections=5 if keep_alive else 0)
        return httpx.Client(base_url=self.base, verify=self.tls, timeout=60, limits=limits)

    def worker_pids(self) -> set[int]:
        """The serving process's live children that are uvicorn's workers (spawned; not the resource tracker)."""
        children = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                command = (stat.parent / "cmdline").read_bytes()
            except OSError:
                continue
            if int(fields[1]) == self.process.pid and fields[0] != "Z" and b"spawn_main" in command:
                children.add(int(stat.parent.name))
        return children

    # -- metrics -------------------------------------------------------------------------------------
    def scrape_text(self) -> str:
        response = httpx.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10)
        assert response.status_code == 200
        return response.text

    def scrape(self) -> dict[tuple[str, tuple], float]:
        return samples(self.scrape_text())


def restored_env(data_dir: Path) -> dict[str, str]:
    """The settings `epr-gateway restore` wrote for the new data directory (`restored.env`)."""
    import shlex

    return dict(shlex.split(line)[1].split("=", 1) for line in (data_dir / "restored.env").read_text().splitlines())


def samples(text: str) -> dict[tuple[str, tuple], float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(scraped: dict, name: str, **labels) -> float:
    return scraped.get((name, tuple(sorted(labels.items()))), 0.0)


# -- the demonstration patient's exchanges ------------------------------------------------------------
def provide_letter(client: httpx.Client, headers: dict, title: str) -> tuple[str, str]:
    """ITI-65 of one letter for the demonstration patient; (entry id, SHA-256 of the bytes provided)."""
    content = pdf_document(title, [title])
    bundle = provide_bundle(spid=DEMO_SPID, documents=[{"title": title, "content": content, "local_id": "DEMO-0001",
                                                        "patient_family": DEMO_FAMILY, "patient_given": DEMO_GIVEN}])
    response = client.post("/fhir", content=orjson.dumps(bundle), headers=headers)
    assert response.status_code == 200, response.text
    location = next(e["response"]["location"] for e in response.json()["entry"]
                    if "/DocumentReference/" in e["response"]["location"])
    return location.rsplit("/", 1)[1], hashlib.sha256(content).hexdigest()


class MixedLoad:
    """Clients that provide (ITI-65), search (ITI-67) and read (ITI-68, bytes compared) the demonstration
    patient's documents until stopped; every answer that is not the expected one is kept as a failure."""

    def __init__(self, gateway: ServingGateway, *, clients: int = 3):
        import threading

        self.gateway, self.clients = gateway, clients
        self.provided: list[tuple[str, str, float]] = []  # (entry id, SHA-256, time.time() when acknowledged)
        self.failures: list[str] = []
        self.requests = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(clients)]

    def __enter__(self) -> MixedLoad:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    def wait_for(self, provided: int, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while len(self.provided) < provided:
            assert time.monotonic() < deadline and not self.failures, self.failures[:3]
            time.sleep(0.05)

    def _run(self, number: int) -> None:
        headers = self.gateway.hcp()
        with self.gateway.client() as client:
            step = 0
            while not self._stop.is_set():
                step += 1
                try:
                    self._one(client, headers, number, step)
                except Exception as error:  # noqa: BLE001 - a transport error is a failed request too
                    with self._lock:
                        self.failures.append(f"{type(error).__name__}: {error}")

    def _one(self, client: httpx.Client, headers: dict, number: int, step: int) -> None:
        kind = step % 3
        if kind == 0 or not self.provided:
            entry, digest = provide_letter(client, headers, f"Letter {number}-{step}")
            with self._lock:
                self.provided.append((entry, digest, time.time()))
                self.requests += 1
            return
        if kind == 1:
            found = client.get("/fhir/DocumentReference", params={"patient.identifier": DEMO_SEARCH}, headers=headers)
            ok = found.status_code == 200 and found.json()["total"] >= 1
        else:
            entry, digest, _ = self.provided[step % len(self.provided)]
            read = client.get(f"/fhir/Binary/{entry}", headers=headers)
            ok = read.status_code == 200 and hashlib.sha256(read.content).hexdigest() == digest
            found = read
        with self._lock:
            self.requests += 1
            if not ok:
                self.failures.append(f"{found.request.method} {found.request.url.path}: {found.status_code} "
                                     f"{found.text[:200]}")
