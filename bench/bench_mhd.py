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
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:  # the gateway is not necessarily installed: run from a checkout
    sys.path.insert(0, str(ROOT))

from load_client import (  # noqa: E402,F401 - bench/ is this script's folder; names other benchmarks use here
    DOC_TYPES, PDF_TARGET_BYTES, REQUEST_TIMEOUT_S, WARMUP_S, RawConnection, client_ssl_context, document_spec,
    load_average, machine_busy_seconds, make_pdf, percentile, run_load, split, tree_cpu_seconds)

SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
SPID = "761337610411353650"
LOCAL_SYSTEM = "urn:oid:2.16.756.5.30.1.999.2.1"
LOCAL_ID = "BENCH-0001"
HCP_GLN = "7601000000002"
SNOMED = "http://snomed.info/sct"
# Issue 26 item 3: each as a share of the bare baseline's requests/s in the same run.
TARGETS = {"search": 0.50, "read": 0.35, "provide": 0.50}
TARGET_PROVIDE_DOCS_PER_S = 250
READY_TIMEOUT_S = 90.0


# -- documents ------------------------------------------------------------------------------------

def provide_bodies(docs: int, per_bundle: int) -> list[tuple[int, bytes]]:
    import orjson

    from gateway.samples import provide_bundle

    bodies = []
    for first in range(0, docs, per_bundle):
        specs = [document_spec(i, local_id=LOCAL_ID) for i in range(first, min(first + per_bundle, docs))]
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


def scenario(pool, *, name: str, base_url: str, paths: list[str], order: str, args, headers: dict[str, str],
             ca: str, server_pid: int, provide: dict[str, Any] | None = None,
             concurrency: int | None = None) -> dict[str, Any]:
    """One measured window of one scenario: GETs of `paths`, or ITI-65 POSTs of new documents
    (`provide`: the `ProvideBodies` arguments, each load process its own documents)."""
    concurrency = concurrency or args.concurrency
    procs = min(args.client_procs, concurrency)
    t_begin = time.time() + 0.5
    t_start = t_begin + WARMUP_S
    t_end = t_start + args.seconds
    specs = [{"client": args.client, "base_url": base_url, "paths": paths, "order": order, "connections": n,
              "headers": headers, "ca": ca, "seed": i, "t_begin": t_begin, "t_start": t_start, "t_end": t_end,
              "provide": provide and {**provide, "first_variant": 8 * i}}
             for i, n in enumerate(split(concurrency, procs))]
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
        "load": load_average(),
    }


# -- phases run in the main process ---------------------------------------------------------------

def _minted(settings, **claims) -> str:
    """A token of the gateway's development issuer (a new jti each time)."""
    from gateway.auth.dev_issuer import mint_token
    from gateway.first_start import dev_issuer_url

    return mint_token(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience,
                      **claims)


def hcp_token(settings) -> str:
    return _minted(settings, role="HCP", gln=HCP_GLN, name="Dr. Bench Favre")


def bench_tokens(settings) -> dict[str, str]:
    """The benchmark's three principals: the HCP who provides and reads, the patient who grants, the
    policy administrator who onboards."""
    return {"HCP": hcp_token(settings), "PAT": _minted(settings, role="PAT", spid=SPID, name="Anna Muster"),
            "PADM": _minted(settings, role="PADM", user_id="bench-policy-admin", name="Bench admin")}


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


def start_gateway(args, work: Path, processes: list[subprocess.Popen], *, extra_env: dict[str, str] | None = None,
                  name: str = "gateway", port: int | None = None) -> dict[str, Any]:
    """`epr-gateway serve` on a free port with a fresh data directory (`extra_env`: more EPR_* settings,
    e.g. EPR_DATABASE_URL and EPR_REDIS_URL; a second node passes the first one's data directory)."""
    from gateway.first_start import prepare
    from gateway.settings import Settings

    port = port or free_port()
    epr = {"EPR_DATA_DIR": str(work / "data"), "EPR_HOST": "127.0.0.1", "EPR_PORT": str(port),
           "EPR_AUDIENCE": f"https://127.0.0.1:{port}/fhir", "EPR_DEMO_DATA": "false",
           "EPR_SEARCH_CACHE_SECONDS": "0" if getattr(args, "no_search_cache", False) else "10",
           "EPR_WORKERS": str(args.workers), **(extra_env or {})}
    # Only these EPR_* settings: an operator's environment (database, issuers, TLS) must not leak in.
    for setting in [n for n in os.environ if n.startswith("EPR_")]:
        del os.environ[setting]
    os.environ.update(epr)
    prepared = prepare(Settings())  # the development keys, certificates and issuer the server will find
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    log = work / f"{name}.log"
    process = start_process([sys.executable, "-c", "from gateway.cli import app; app()", "serve"],
                            env=env, log=log, cwd=ROOT)
    processes.append(process)
    ca = str(prepared.pki.ca_cert)
    wait_ready(f"https://127.0.0.1:{port}/health/ready", client_ssl_context(ca), process, log)
    return {"settings": prepared.settings, "port": port, "ca": ca, "process": process, "log": log,
            "env": env}


def start_baseline(args, work: Path, gateway: dict[str, Any], bundle: bytes,
                   processes: list[subprocess.Popen], *, store: str | None = None,
                   name: str = "baseline") -> dict[str, Any]:
    """bench/baseline_app.py with the gateway's certificate and worker count; `store`: where its ITI-65
    baseline stores (default: an SQLite file of its own in `work`, as the embedded gateway)."""
    body = work / f"{name}_bundle.json"
    body.write_bytes(bundle)
    port = free_port()
    settings = gateway["settings"]
    log = work / f"{name}.log"
    store = store or f"sqlite:///{work / f'{name}.sqlite3'}"
    process = start_process([sys.executable, str(BENCH / "baseline_app.py"), "--port", str(port), "--workers",
                             str(args.workers), "--body", str(body), "--certfile", str(settings.tls_cert),
                             "--keyfile", str(settings.tls_key), "--store", store],
                            env=gateway["env"], log=log, cwd=ROOT)
    processes.append(process)
    wait_ready(f"https://127.0.0.1:{port}/health/ready", client_ssl_context(gateway["ca"]), process, log)
    return {"port": port, "process": process, "log": log}


# The measured scenarios: (key, name, server, baseline key). Each round runs them all, in turns.
SCENARIOS = (("baseline", "baseline", "baseline", None), ("search", "ITI-67 search", "gateway", "baseline"),
             ("read", "ITI-68 read", "gateway", "baseline"),
             ("baseline_provide", "baseline provide", "baseline", None),
             ("provide", "ITI-65 provide", "gateway", "baseline_provide"))


def main(argv: list[str] | None = None) -> int:
    stop_on_signals()  # a SIGTERM/SIGHUP still stops the servers below (finally)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=200, help="documents provided before the reads (default 200)")
    parser.add_argument("--docs-per-bundle", type=int, default=1, help="documents per ITI-65 Bundle (default 1)")
    parser.add_argument("--provide-concurrency", type=int, default=4,
                        help="connections posting ITI-65 Bundles at once (default 4)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each load window (default 10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds of every scenario, the baselines and the gateway in turns (default 3)")
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
           args.client_procs, args.rounds) < 1 or args.seconds <= 0:
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
        tokens = bench_tokens(settings)
        token = tokens["HCP"]
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
        verification = token_verification_cost(settings, lambda: hcp_token(settings))

        pool = multiprocessing.get_context("spawn").Pool(args.client_procs)
        common = dict(args=args, ca=gateway["ca"])
        servers = {"gateway": (base, gateway["process"].pid),
                   "baseline": (f"https://127.0.0.1:{baseline['port']}", baseline["process"].pid)}
        loads = {"baseline": dict(paths=search_paths(), order="cycle", headers=headers),
                 "search": dict(paths=search_paths(), order="cycle", headers=headers),
                 "read": dict(paths=[f"/fhir/Binary/{i}" for i in provided["ids"]], order="random",
                              headers=read_headers),
                 "baseline_provide": dict(paths=["/fhir"], order="cycle", headers=headers,
                                          concurrency=args.provide_concurrency,
                                          provide={"spid": SPID, "local_id": LOCAL_ID}),
                 "provide": dict(paths=["/fhir"], order="cycle", headers=headers, concurrency=args.provide_concurrency,
                                 provide={"spid": SPID, "local_id": LOCAL_ID})}
        print(f"load: {args.concurrency} connections ({args.provide_concurrency} for ITI-65) from "
              f"{args.client_procs} process(es), {args.rounds} round(s) of {args.seconds:g} s per scenario, "
              "the baselines and the gateway in turns ...", flush=True)
        rounds: list[dict[str, Any]] = []
        for number in range(args.rounds):
            order = SCENARIOS if number % 2 == 0 else tuple(reversed(SCENARIOS))  # ABBA: drift falls on both
            measured = {}
            for key, name, server, _ in order:
                base_url, pid = servers[server]
                measured[key] = scenario(pool, name=name, base_url=base_url, server_pid=pid, **common, **loads[key])
            rounds.append(measured)
            print("  round " + str(number + 1) + ": " + ", ".join(
                f"{key} {ratio:.2f}" for key, ratio in round_ratios(measured).items())
                + f" (load {load_average():.1f})", flush=True)
        report = build_report(args, provided, rounds, verification, typical_bytes=len(typical.content))
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


def round_ratios(measured: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per gateway scenario: its requests/s over its baseline's, in the same round."""
    return {key: (measured[key]["req_per_s"] / measured[bare]["req_per_s"] if measured[bare]["req_per_s"]
                  else float("nan")) for key, _, _, bare in SCENARIOS if bare}


def cpu_ratios(measured: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Per gateway scenario: baseline CPU per request over the gateway's (what the ratio would be if both
    servers were saturated; moves less than req/s when other jobs share the machine)."""
    return {key: (measured[bare]["server_cpu_ms_per_req"] / measured[key]["server_cpu_ms_per_req"]
                  if measured[key]["server_cpu_ms_per_req"] else float("nan"))
            for key, _, _, bare in SCENARIOS if bare}


def build_report(args, provided, rounds, verification, *, typical_bytes: int) -> dict[str, Any]:
    ratios = {key: [round_ratios(r)[key] for r in rounds] for key in TARGETS}
    by_cpu = {key: [cpu_ratios(r)[key] for r in rounds] for key in TARGETS}
    provide_rates = [r["provide"]["req_per_s"] * args.docs_per_bundle for r in rounds]
    targets = {key: {"text": f"{name} >= {TARGETS[key]:.0%} of its baseline (median of the rounds)",
                     "ratio": median(ratios[key]), "pass": median(ratios[key]) >= TARGETS[key]}
               for key, name, _, bare in SCENARIOS if bare}
    targets["provide_rate"] = {"text": f"ITI-65 >= {TARGET_PROVIDE_DOCS_PER_S} documents/s on "
                                       f"{args.workers} worker(s) (median of the rounds)",
                               "ratio": median(provide_rates),
                               "pass": median(provide_rates) >= TARGET_PROVIDE_DOCS_PER_S}
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "platform": platform.platform(),
                 # what uvicorn's "auto" picks in both servers (and the load client's loop)
                 "http": "httptools" if importlib.util.find_spec("httptools") else "h11",
                 "loop": "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"},
        "args": vars(args),
        "provide": {k: v for k, v in provided.items() if k != "ids"} | {"docs": len(provided["ids"])},
        "rounds": rounds,
        "ratios": ratios,
        "cpu_ratios": by_cpu,
        "targets": targets,
        "typical_search_answer_bytes": typical_bytes,
        "token_verification": verification,
    }


def print_report(report: dict[str, Any]) -> None:
    p, a = report["provide"], report["args"]
    print()
    print(f"{a['workers']} server worker(s); load: {a['concurrency']} keep-alive connections "
          f"({a['provide_concurrency']} for ITI-65) from {a['client_procs']} {a['client']} client process(es), "
          f"{a['rounds']} round(s) of {a['seconds']:g} s per scenario; {report['host']['cpus']} CPUs; "
          f"uvicorn http={report['host']['http']} loop={report['host']['loop']}")
    print("ITI-67 pages: " + ("read from the store every time (--no-search-cache)" if a.get("no_search_cache") else
                              "remembered between identical searches until the record changes (the default; "
                              "--no-search-cache to measure without)"))
    print(f"set-up provide (ITI-65, httpx): {p['docs']} docs in {p['bundles']} bundle(s), {p['elapsed_s']:.2f} s -> "
          f"{p['docs_per_s']:.1f} docs/s (errors {p['errors']})")
    print()
    print(f"{'round':<6}{'scenario':<17}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'bytes':>9}{'errors':>8}"
          f"{'server cpu':>12}{'ms cpu/req':>12}{'client cpu':>12}{'other cpu':>11}{'load':>6}")
    for number, measured in enumerate(report["rounds"], 1):
        for key, *_ in SCENARIOS:
            r = measured[key]
            print(f"{number:<6}{r['name']:<17}{r['req_per_s']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                  f"{r['mean_response_bytes']:>9.0f}{r['errors']:>8}{r['server_cpu_cores']:>12.2f}"
                  f"{r['server_cpu_ms_per_req']:>12.3f}{r['client_cpu_cores']:>12.2f}{r['other_cpu_cores']:>11.2f}"
                  f"{r['load']:>6.1f}")
    print()
    for key, target in report["targets"].items():
        per_round = report["ratios"].get(key)
        rounds = (" (rounds " + ", ".join(f"{x:.2f}" for x in per_round) + "; by server CPU per request "
                  + ", ".join(f"{x:.2f}" for x in report["cpu_ratios"][key]) + ")") if per_round else ""
        print(f"{target['text']}: {target['ratio']:.2f}{rounds}: {'PASS' if target['pass'] else 'FAIL'}")
    verification = report["token_verification"]
    if "first_us" in verification:
        print(f"token verification (in-process): {verification['first_us']:.0f} us for a new token, "
              f"{verification['repeat_us']:.0f} us for the same token again")
    else:
        print(f"token verification: not measured ({verification['error']})")
    for measured in report["rounds"]:
        for key, *_ in SCENARIOS:
            r = measured[key]
            if r["errors"]:
                print(f"WARNING {r['name']}: {r['errors']} failed request(s), e.g. {r['error_samples'][0]}")
            if max(r["client_cpu_per_proc"], default=0) > 0.9:
                print(f"WARNING {r['name']}: a load process was >90% busy; the client may be the bottleneck "
                      f"(try --client-procs 2)")
    other = max(r["other_cpu_cores"] for measured in report["rounds"] for r in measured.values())
    if other > 0.25:
        print(f"WARNING other processes used up to {other:.2f} cores during the windows: the figures are noisy; "
              "the ratios of each round compare servers under the same load")
    if p["errors"]:
        print(f"WARNING provide: {p['errors']} failed bundle(s), e.g. {p['error_samples'][0]}")


if __name__ == "__main__":
    sys.exit(main())
