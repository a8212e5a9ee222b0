"""MHD benchmark: ITI-65 provide, ITI-67 search and ITI-68 read over HTTPS against a real gateway server,
compared with a bare FastAPI endpoint served the same way (bench/baseline_app.py).

    .venv/bin/python bench/bench_mhd.py --docs 200 --seconds 10 [--concurrency 8] [--workers 1]

It starts `epr-gateway serve` on a fresh data directory and a free loopback port, registers one patient
(ITI-104), onboards them and grants the HCP access (PPQ-3), provides --docs distinct ~50 KB PDFs
(ITI-65), starts the baseline, then drives each scenario for --seconds with
--concurrency keep-alive connections from --client-procs load processes. It prints a table, writes the
figures to bench/results/<timestamp>.json and stops every process it started. It reports; it asserts
nothing. See bench/README.md for how to read the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import multiprocessing
import os
import platform
import random
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # the gateway is not necessarily installed: run from a checkout
    sys.path.insert(0, str(ROOT))

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
SPID = "761337610411353650"
LOCAL_SYSTEM = "urn:oid:2.16.756.5.30.1.999.2.1"
LOCAL_ID = "BENCH-0001"
HCP_GLN = "7601000000002"
SNOMED = "http://snomed.info/sct"
DOC_TYPES = ("373942005", "4241000179101", "371531000", "419891008")  # discharge, lab, consultation, record
TARGET_SEARCH_RATIO = 0.30
PDF_TARGET_BYTES = 50 * 1024
READY_TIMEOUT_S = 90.0
WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_CONNECTION = 1_000_000  # a bound on every load loop besides the clock

WORDS = ("patient", "admitted", "discharged", "haemoglobin", "creatinine", "blood", "pressure", "normal",
         "follow-up", "consultation", "cardiology", "medication", "dose", "daily", "allergy", "none", "known",
         "history", "hypertension", "diabetes", "renal", "function", "stable", "imaging", "thorax", "clear")


# -- documents ------------------------------------------------------------------------------------

def make_pdf(index: int) -> bytes:
    """A distinct ~50 KB PDF: seeded pseudo-random clinical prose, so no two documents are equal."""
    from gateway.samples import pdf_document

    rnd = random.Random(index)
    lines = [f"Benchmark document {index}, unique {rnd.getrandbits(64):016x}"]
    lines += [" ".join(rnd.choice(WORDS) for _ in range(12)) for _ in range(PDF_TARGET_BYTES // 130)]
    pdf = pdf_document(f"Report {index}", lines)
    while len(pdf) < PDF_TARGET_BYTES:  # top up to the target size (bounded: each round adds ~1 KB)
        lines += [" ".join(rnd.choice(WORDS) for _ in range(12)) for _ in range(10)]
        pdf = pdf_document(f"Report {index}", lines)
    return pdf


def document_spec(index: int) -> dict[str, Any]:
    month = 1 + index % 12
    return {
        "title": f"Report {index}",
        "content": make_pdf(index),
        "type_code": DOC_TYPES[index % len(DOC_TYPES)],
        "local_id": LOCAL_ID,
        "date": f"2026-{month:02d}-{1 + index % 28:02d}T10:00:00+01:00",
    }


def provide_bodies(docs: int, per_bundle: int) -> list[tuple[int, bytes]]:
    import orjson

    from gateway.samples import provide_bundle

    bodies = []
    for first in range(0, docs, per_bundle):
        specs = [document_spec(i) for i in range(first, min(first + per_bundle, docs))]
        bodies.append((len(specs), orjson.dumps(provide_bundle(spid=SPID, documents=specs))))
    return bodies


def search_paths() -> list[str]:
    """ITI-67 queries the load cycles through (percent-encoded once, so both clients send the same bytes)."""
    base = f"/fhir/DocumentReference?patient.identifier={SPID_SYSTEM}|{SPID}&_count=10"
    return [quote(path, safe="/?=&:,") for path in (
        base,
        base + "&status=current",
        base + f"&type={SNOMED}|{DOC_TYPES[0]}",
        base + "&date=ge2026-06-01",
        base + f"&status=current&type={SNOMED}|{DOC_TYPES[1]},{SNOMED}|{DOC_TYPES[2]}&date=lt2026-10-01",
    )]


# -- processes ------------------------------------------------------------------------------------
from processes import start_process, stop_on_signals, stop_process  # noqa: E402,F401 - shared by every benchmark

def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(url: str, ssl_context: ssl.SSLContext, process: subprocess.Popen, log: Path) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT_S
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode} before it was ready:\n{tail(log)}")
        try:
            response = httpx.get(url, verify=ssl_context, timeout=2.0)
            if response.status_code == 200:
                return
            last = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            last = type(exc).__name__
        time.sleep(0.25)
    raise SystemExit(f"server not ready after {READY_TIMEOUT_S:.0f} s ({last}):\n{tail(log)}")


def tail(log: Path, lines: int = 30) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def tree_cpu_seconds(root_pid: int) -> float:
    """user+system CPU of a process and its descendants (uvicorn workers), from /proc."""
    ticks = os.sysconf("SC_CLK_TCK")
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        parents[int(entry)] = int(fields[1])
        times[int(entry)] = (int(fields[11]) + int(fields[12])) / ticks
    tree, frontier = {root_pid}, [root_pid]
    while frontier:
        pid = frontier.pop()
        children = [p for p, parent in parents.items() if parent == pid and p not in tree]
        tree.update(children)
        frontier.extend(children)
    return sum(times.get(pid, 0.0) for pid in tree)


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


# -- load client (runs in spawned processes; identical for the gateway and the baseline) -------------

def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


def run_load(spec: dict[str, Any]) -> dict[str, Any]:
    """One load process: spec["connections"] keep-alive connections until spec["t_end"]."""
    if spec["client"] == "httpx" and importlib.util.find_spec("sniffio") is None:
        # httpcore tries `import sniffio` several times per request; without the package every try
        # walks sys.path (~0.15 ms each, a fifth of the client's CPU). None in sys.modules fails fast.
        sys.modules.setdefault("sniffio", None)  # type: ignore[arg-type]
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_load(spec))
    return uvloop.run(_load(spec))


class RawConnection:
    """A minimal HTTP/1.1 keep-alive GET client over asyncio TLS streams: status line, Content-Length
    or chunked body, Connection: close. About a tenth of httpx's CPU per request (see README)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext):
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(
                self.host, self.port, ssl=self.ssl_context, server_hostname=self.host, limit=1 << 20)
        try:
            self.writer.write(request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length, chunked, close = 0, False, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                name = name.strip().lower()
                if name == b"content-length":
                    length = int(value)
                elif name == b"transfer-encoding":
                    chunked = b"chunked" in value.lower()
                elif name == b"connection":
                    close = b"close" in value.lower()
            body = await (self._chunked() if chunked else self.reader.readexactly(length))
        except BaseException:
            self.close()
            raise
        if close:
            self.close()
        return status, body

    async def _chunked(self) -> bytes:
        parts = []
        for _ in range(1_000_000):
            size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                await self.reader.readuntil(b"\r\n")
                break
            parts.append(await self.reader.readexactly(size))
            await self.reader.readexactly(2)
        return b"".join(parts)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    # Wall-clock instants are shared by every load process; convert them to this process's monotonic clock.
    offset = time.monotonic() - time.time()
    begin, start, end = (spec[k] + offset for k in ("t_begin", "t_start", "t_end"))
    paths: list[str] = spec["paths"]
    connections: int = spec["connections"]
    latencies: list[float] = []
    sizes: list[int] = []
    errors: list[str] = []
    cpu: dict[str, float] = {}
    ssl_context = client_ssl_context(spec["ca"])
    url = urlsplit(spec["base_url"])

    async def meter() -> None:
        await asyncio.sleep(max(0.0, start - time.monotonic()))
        cpu["start"] = time.process_time()
        await asyncio.sleep(max(0.0, end - time.monotonic()))
        cpu["end"] = time.process_time()

    async def connection(fetch, number: int) -> None:
        rnd = random.Random(spec["seed"] * 1000 + number)
        cursor = rnd.randrange(len(paths))
        for _ in range(MAX_REQUESTS_PER_CONNECTION):
            sent = time.monotonic()
            if sent >= end:
                return
            path = paths[cursor % len(paths)] if spec["order"] == "cycle" else rnd.choice(paths)
            cursor += 1
            try:
                status, body = await asyncio.wait_for(fetch(path), REQUEST_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - connection, TLS, timeout, httpx errors: counted, not fatal
                status, body = type(exc).__name__, b""
            done = time.monotonic()
            if sent >= start and done <= end:
                if status == 200:
                    latencies.append(done - sent)
                    sizes.append(len(body))
                else:
                    errors.append(f"{status} {path}: {body[:160]!r}")

    if spec["client"] == "httpx":
        import httpx

        limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
        async with httpx.AsyncClient(base_url=spec["base_url"], http1=True, http2=False, verify=ssl_context,
                                     limits=limits, timeout=REQUEST_TIMEOUT_S, headers=spec["headers"]) as client:
            async def fetch(path: str) -> tuple[int, bytes]:
                response = await client.get(path)
                return response.status_code, response.content

            await asyncio.sleep(max(0.0, begin - time.monotonic()))
            await asyncio.gather(meter(), *(connection(fetch, n) for n in range(connections)))
    else:
        fixed = "".join(f"{k}: {v}\r\n" for k, v in
                        {"Host": url.netloc, "User-Agent": "epr-bench", **spec["headers"]}.items())
        requests = {p: f"GET {p} HTTP/1.1\r\n{fixed}\r\n".encode("latin-1") for p in paths}
        pool = [RawConnection(url.hostname, url.port, ssl_context) for _ in range(connections)]

        def fetcher(raw: RawConnection):
            return lambda path: raw.get(requests[path])

        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        try:
            await asyncio.gather(meter(), *(connection(fetcher(raw), n) for n, raw in enumerate(pool)))
        finally:
            for raw in pool:
                raw.close()
    return {"latencies": latencies, "sizes": sizes, "errors": errors,
            "cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0)}


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def scenario(pool, *, name: str, base_url: str, paths: list[str], order: str, args, headers: dict[str, str],
             ca: str, server_pid: int) -> dict[str, Any]:
    procs = min(args.client_procs, args.concurrency)
    t_begin = time.time() + 0.5
    t_start = t_begin + WARMUP_S
    t_end = t_start + args.seconds
    specs = [{"client": args.client, "base_url": base_url, "paths": paths, "order": order, "connections": n,
              "headers": headers, "ca": ca, "seed": i, "t_begin": t_begin, "t_start": t_start, "t_end": t_end}
             for i, n in enumerate(split(args.concurrency, procs))]
    pending = pool.map_async(run_load, specs)
    time.sleep(max(0.0, t_start - time.time()))
    server_cpu, machine = tree_cpu_seconds(server_pid), machine_busy_seconds()
    time.sleep(max(0.0, t_end - time.time()))
    server_cpu, machine = tree_cpu_seconds(server_pid) - server_cpu, machine_busy_seconds() - machine
    results = pending.get(timeout=args.seconds + WARMUP_S + REQUEST_TIMEOUT_S + 60)
    latencies = sorted(x for r in results for x in r["latencies"])
    sizes = [x for r in results for x in r["sizes"]]
    errors = [x for r in results for x in r["errors"]]
    client_cpu = sum(r["cpu_s"] for r in results)
    return {
        "name": name,
        "requests": len(latencies),
        "errors": len(errors),
        "error_samples": errors[:5],
        "req_per_s": len(latencies) / args.seconds,
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "mean_response_bytes": (sum(sizes) / len(sizes)) if sizes else 0,
        "server_cpu_cores": server_cpu / args.seconds,
        "server_cpu_ms_per_req": server_cpu * 1000 / len(latencies) if latencies else float("nan"),
        "client_cpu_cores": client_cpu / args.seconds,
        # anything else busy on the machine (other jobs, the idle server): figures are noisy when high
        "other_cpu_cores": max(0.0, machine - server_cpu - client_cpu) / args.seconds,
        "client_cpu_per_proc": [round(r["cpu_s"] / args.seconds, 3) for r in results],
    }


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


# -- phases run in the main process ---------------------------------------------------------------

def consent_bodies() -> tuple[list[bytes], bytes]:
    """PPQ-3 Consents: the onboarding set (201/202/203, posted by a policy administrator) and the
    patient's 301 grant of the normal level to the benchmark's HCP: a record in everyday use."""
    import uuid

    import orjson

    from consent.policies import NORMAL, Policy, onboarding_policies
    from consent.ppqm import consent_from_policy

    ids = tuple(f"urn:uuid:{uuid.uuid4()}" for _ in range(3))
    onboarding = [orjson.dumps(consent_from_policy(p)) for p in onboarding_policies(patient_spid=SPID,
                                                                                    policy_set_ids=ids)]
    grant = Policy(policy_set_id=f"urn:uuid:{uuid.uuid4()}", template=301, patient_spid=SPID, rule=NORMAL,
                   subject_id=HCP_GLN)
    return onboarding, orjson.dumps(consent_from_policy(grant))


async def register_and_provide(base_url: str, ca: str, tokens: dict[str, str], bodies: list[tuple[int, bytes]],
                               concurrency: int) -> dict[str, Any]:
    import httpx
    import orjson

    from gateway.samples import patient_feed

    def bearer(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}", "Content-Type": "application/fhir+json"}

    headers = bearer("HCP")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, verify=client_ssl_context(ca), headers=headers, limits=limits,
                                 timeout=120.0) as client:
        patient = patient_feed(spid=SPID, local_system=LOCAL_SYSTEM, local_id=LOCAL_ID, family="Muster",
                               given="Anna", birth_date="1980-05-17", gender="female")
        response = await client.put(f"/fhir/Patient?identifier={LOCAL_SYSTEM}|{LOCAL_ID}",
                                    content=orjson.dumps(patient))
        if response.status_code not in (200, 201):
            raise SystemExit(f"ITI-104 failed: {response.status_code} {response.text[:500]}")
        onboarding, grant = consent_bodies()
        for body, role in [*((b, "PADM") for b in onboarding), (grant, "PAT")]:
            response = await client.post("/fhir/Consent", content=body, headers=bearer(role))
            if response.status_code != 201:
                raise SystemExit(f"PPQ-3 ({role}) failed: {response.status_code} {response.text[:500]}")

        queue: asyncio.Queue = asyncio.Queue()
        for item in bodies:
            queue.put_nowait(item)
        ids: list[str] = []
        latencies: list[float] = []
        errors: list[str] = []

        async def provider() -> None:
            while not queue.empty():
                _, body = queue.get_nowait()
                sent = time.monotonic()
                try:
                    answer = await client.post("/fhir", content=body)
                except httpx.HTTPError as exc:
                    errors.append(f"{type(exc).__name__} {exc}")
                    continue
                latencies.append(time.monotonic() - sent)
                if answer.status_code != 200:
                    errors.append(f"{answer.status_code} {answer.text[:300]}")
                    continue
                ids.extend(e["response"]["location"].rsplit("/", 1)[1] for e in answer.json()["entry"]
                           if "/DocumentReference/" in e["response"]["location"])

        started = time.monotonic()
        await asyncio.gather(*(provider() for _ in range(concurrency)))
        elapsed = time.monotonic() - started
    latencies.sort()
    return {"ids": ids, "elapsed_s": elapsed, "docs_per_s": len(ids) / elapsed, "bundles": len(bodies),
            "errors": len(errors), "error_samples": errors[:5], "p50_ms": percentile(latencies, 0.5) * 1000,
            "p99_ms": percentile(latencies, 0.99) * 1000}


def token_verification_cost(settings, mint, rounds: int = 200) -> dict[str, Any]:
    """In-process cost of IUA token verification: `first` for a token never seen (signature checked),
    `repeat` for the same token again (what a client re-using its token pays if the verifier caches)."""
    try:
        from gateway.wiring import build_runtime

        verifier = build_runtime(settings).verifier
        fresh = [mint() for _ in range(rounds + 1)]  # distinct jti: each is new to the verifier
        verifier.verify(fresh.pop())
        started = time.perf_counter()
        for token in fresh:
            verifier.verify(token)
        first = (time.perf_counter() - started) / rounds
        started = time.perf_counter()
        for _ in range(rounds):
            verifier.verify(fresh[0])
        repeat = (time.perf_counter() - started) / rounds
    except Exception as exc:  # noqa: BLE001 - optional figure: the benchmark goes on without it
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"first_us": first * 1e6, "repeat_us": repeat * 1e6, "rounds": rounds}


def start_gateway(args, work: Path, processes: list[subprocess.Popen]) -> dict[str, Any]:
    from gateway.first_start import prepare
    from gateway.settings import Settings

    port = free_port()
    epr = {"EPR_DATA_DIR": str(work / "data"), "EPR_HOST": "127.0.0.1", "EPR_PORT": str(port),
           "EPR_AUDIENCE": f"https://127.0.0.1:{port}/fhir", "EPR_DEMO_DATA": "false",
           "EPR_SEARCH_CACHE_SECONDS": "0" if getattr(args, "no_search_cache", False) else "10",
           "EPR_WORKERS": str(args.workers)}
    # Only these EPR_* settings: an operator's environment (database, issuers, TLS) must not leak in.
    for name in [n for n in os.environ if n.startswith("EPR_")]:
        del os.environ[name]
    os.environ.update(epr)
    prepared = prepare(Settings())  # the development keys, certificates and issuer the server will find
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    log = work / "gateway.log"
    process = start_process([sys.executable, "-c", "from gateway.cli import app; app()", "serve"],
                            env=env, log=log, cwd=ROOT)
    processes.append(process)
    ca = str(prepared.pki.ca_cert)
    wait_ready(f"https://127.0.0.1:{port}/health/ready", client_ssl_context(ca), process, log)
    return {"settings": prepared.settings, "port": port, "ca": ca, "process": process, "log": log,
            "env": env}


def start_baseline(args, work: Path, gateway: dict[str, Any], bundle: bytes,
                   processes: list[subprocess.Popen]) -> dict[str, Any]:
    body = work / "baseline_bundle.json"
    body.write_bytes(bundle)
    port = free_port()
    settings = gateway["settings"]
    log = work / "baseline.log"
    process = start_process([sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port), "--workers",
                             str(args.workers), "--body", str(body), "--certfile", str(settings.tls_cert),
                             "--keyfile", str(settings.tls_key)], env=gateway["env"], log=log, cwd=ROOT)
    processes.append(process)
    wait_ready(f"https://127.0.0.1:{port}/health/ready", client_ssl_context(gateway["ca"]), process, log)
    return {"port": port, "process": process, "log": log}


def main(argv: list[str] | None = None) -> int:
    stop_on_signals()  # a SIGTERM/SIGHUP still stops the servers below (finally)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="documents to provide (default 200)")
    parser.add_argument("--docs-per-bundle", type=int, default=1, help="documents per ITI-65 Bundle (default 1)")
    parser.add_argument("--provide-concurrency", type=int, default=4,
                        help="connections posting ITI-65 Bundles at once (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load scenario (default 10)")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes, both servers (default 1)")
    parser.add_argument("--client-procs", type=int, default=1,
                        help="load processes sharing the connections (default 1; see README on saturation)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw",
                        help="load client: raw asyncio HTTP/1.1 (default) or httpx.AsyncClient (see README)")
    parser.add_argument("--keep-data", action="store_true", help="keep the temporary data directory and logs")
    parser.add_argument("--no-search-cache", action="store_true",
                        help="the gateway reads every search from the store (EPR_SEARCH_CACHE_SECONDS=0)")
    args = parser.parse_args(argv)
    if min(args.docs, args.docs_per_bundle, args.provide_concurrency, args.concurrency, args.workers,
           args.client_procs) < 1 or args.seconds <= 0:
        parser.error("every count and --seconds must be positive")

    work = Path(tempfile.mkdtemp(prefix="epr-bench-"))
    processes: list[subprocess.Popen] = []
    pool = None
    try:
        print(f"preparing {args.docs} documents of ~{PDF_TARGET_BYTES // 1024} KB ...", flush=True)
        bodies = provide_bodies(args.docs, args.docs_per_bundle)
        gateway = start_gateway(args, work, processes)
        settings = gateway["settings"]
        base = f"https://127.0.0.1:{gateway['port']}"
        from gateway.auth.dev_issuer import mint_token
        from gateway.first_start import dev_issuer_url

        issuer = dict(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience)
        token = mint_token(role="HCP", gln=HCP_GLN, name="Dr. Bench Favre", **issuer)
        tokens = {"HCP": token, "PAT": mint_token(role="PAT", spid=SPID, name="Anna Muster", **issuer),
                  "PADM": mint_token(role="PADM", user_id="bench-policy-admin", name="Bench admin", **issuer)}
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        # ITI-68 asks for the document itself: Accept: application/fhir+json would get a FHIR Binary.
        read_headers = {"Authorization": f"Bearer {token}", "Accept": "application/pdf, */*"}
        print(f"gateway up on {base} ({args.workers} worker(s)); providing ...", flush=True)
        provided = asyncio.run(register_and_provide(base, gateway["ca"], tokens, bodies, args.provide_concurrency))
        if not provided["ids"]:
            raise SystemExit(f"no document was provided: {provided['error_samples']}")

        import httpx

        ssl_context = client_ssl_context(gateway["ca"])
        typical = httpx.get(base + search_paths()[1], headers=headers, verify=ssl_context)
        if typical.status_code != 200 or not typical.json().get("entry"):
            raise SystemExit(f"ITI-67 search answered {typical.status_code}: {typical.text[:500]}")
        read = httpx.get(f"{base}/fhir/Binary/{provided['ids'][0]}", headers=read_headers, verify=ssl_context)
        if read.status_code != 200 or not read.content.startswith(b"%PDF-") or len(read.content) < PDF_TARGET_BYTES:
            raise SystemExit(f"ITI-68 read answered {read.status_code} {read.content[:300]!r}")
        baseline = start_baseline(args, work, gateway, typical.content, processes)
        verification = token_verification_cost(
            settings, lambda: mint_token(role="HCP", gln=HCP_GLN, name="Dr. Bench Favre", **issuer))

        pool = multiprocessing.get_context("spawn").Pool(args.client_procs)
        common = dict(args=args, headers=headers, ca=gateway["ca"])
        print(f"load: {args.concurrency} connections from {args.client_procs} process(es), "
              f"{args.seconds:g} s per scenario ...", flush=True)
        search = scenario(pool, name="ITI-67 search", base_url=base, paths=search_paths(), order="cycle",
                          server_pid=gateway["process"].pid, **common)
        reads = scenario(pool, name="ITI-68 read", base_url=base, paths=[f"/fhir/Binary/{i}" for i in provided["ids"]],
                         order="random", server_pid=gateway["process"].pid, **{**common, "headers": read_headers})
        bare = scenario(pool, name="baseline", base_url=f"https://127.0.0.1:{baseline['port']}",
                        paths=search_paths(), order="cycle", server_pid=baseline["process"].pid, **common)
        report = build_report(args, provided, search, reads, bare, verification, typical_bytes=len(typical.content))
        print_report(report)
        out = BENCH / "results" / f"{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        import orjson

        out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
        print(f"\nresults: {out}")
        if args.keep_data:
            print(f"data and server logs kept in {work}")
        return 0
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for process in reversed(processes):
            stop_process(process)
        if not args.keep_data:
            import shutil

            shutil.rmtree(work, ignore_errors=True)


def build_report(args, provided, search, reads, bare, verification, *, typical_bytes: int) -> dict[str, Any]:
    ratio = (lambda r: r["req_per_s"] / bare["req_per_s"] if bare["req_per_s"] else float("nan"))
    search_ratio = ratio(search)
    # Server CPU per request, compared: what the ratio would be if both servers were the bottleneck
    # (less sensitive than req/s to other jobs sharing the machine).
    cpu_ratio = (lambda r: bare["server_cpu_ms_per_req"] / r["server_cpu_ms_per_req"]
                 if r["server_cpu_ms_per_req"] else float("nan"))
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 # what uvicorn's "auto" picks in both servers (and the load client's loop)
                 "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
                 "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"},
        "args": vars(args),
        "provide": {k: v for k, v in provided.items() if k != "ids"} | {"docs": len(provided["ids"])},
        "search": search,
        "read": reads,
        "baseline": bare,
        "typical_search_answer_bytes": typical_bytes,
        "ratio_search_baseline": search_ratio,
        "ratio_read_baseline": ratio(reads),
        "cpu_ratio_search_baseline": cpu_ratio(search),
        "cpu_ratio_read_baseline": cpu_ratio(reads),
        "target": {"text": f"ITI-67 search >= {TARGET_SEARCH_RATIO:.0%} of baseline",
                   "pass": search_ratio >= TARGET_SEARCH_RATIO},
        "token_verification": verification,
    }


def print_report(report: dict[str, Any]) -> None:
    p, a = report["provide"], report["args"]
    print()
    print(f"{a['workers']} server worker(s); load: {a['concurrency']} keep-alive connections from "
          f"{a['client_procs']} {a['client']} client process(es), {a['seconds']:g} s per scenario; "
          f"{report['host']['cpus']} CPUs; uvicorn http={report['host']['http']} loop={report['host']['loop']}")
    print("ITI-67 pages: " + ("read from the store every time (--no-search-cache)" if a.get("no_search_cache") else
                              "remembered between identical searches until the record changes (the default; "
                              "--no-search-cache to measure without)"))
    print(f"provide (ITI-65): {p['docs']} docs in {p['bundles']} bundle(s), {p['elapsed_s']:.2f} s -> "
          f"{p['docs_per_s']:.1f} docs/s (bundle p50 {p['p50_ms']:.1f} ms, p99 {p['p99_ms']:.1f} ms, "
          f"errors {p['errors']})")
    print()
    print(f"{'scenario':<15}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'bytes':>9}{'errors':>8}"
          f"{'server cpu':>12}{'ms cpu/req':>12}{'client cpu':>12}{'other cpu':>11}")
    for key in ("search", "read", "baseline"):
        r = report[key]
        print(f"{r['name']:<15}{r['req_per_s']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
              f"{r['mean_response_bytes']:>9.0f}{r['errors']:>8}{r['server_cpu_cores']:>12.2f}"
              f"{r['server_cpu_ms_per_req']:>12.3f}"
              f"{r['client_cpu_cores']:>12.2f}{r['other_cpu_cores']:>11.2f}")
    print()
    print(f"search/baseline: {report['ratio_search_baseline']:.2f}   read/baseline: {report['ratio_read_baseline']:.2f}"
          f"   (by server CPU per request: {report['cpu_ratio_search_baseline']:.2f} and "
          f"{report['cpu_ratio_read_baseline']:.2f})")
    target = report["target"]
    print(f"target: {target['text']}: {'PASS' if target['pass'] else 'FAIL'}")
    verification = report["token_verification"]
    if "first_us" in verification:
        print(f"token verification (in-process): {verification['first_us']:.0f} us for a new token, "
              f"{verification['repeat_us']:.0f} us for the same token again")
    else:
        print(f"token verification: not measured ({verification['error']})")
    for key in ("search", "read", "baseline"):
        r = report[key]
        if r["errors"]:
            print(f"WARNING {r['name']}: {r['errors']} failed request(s), e.g. {r['error_samples'][0]}")
        if max(r["client_cpu_per_proc"], default=0) > 0.9:
            print(f"WARNING {r['name']}: a load process was >90% busy; the client may be the bottleneck "
                  f"(try --client-procs 2)")
        if r["other_cpu_cores"] > 0.25:
            print(f"WARNING {r['name']}: other processes used {r['other_cpu_cores']:.2f} cores during the window; "
                  f"the figures are noisy, run again on a quiet machine")
    if p["errors"]:
        print(f"WARNING provide: {p['errors']} failed bundle(s), e.g. {p['error_samples'][0]}")


if __name__ == "__main__":
    sys.exit(main())
