"""Scale-out benchmark: the gateway on PostgreSQL + Redis with 1, 2 and 4 worker processes and as two
nodes (two `serve` processes on their own ports, the same database, Redis and keys, the client spread
over both), each beside a bare FastAPI baseline on as many workers, under the exchanges of a record in
use — and, while the mixed load runs, the invariants checked (bench/scale_load.py's probes).

    .venv/bin/python bench/bench_scale.py                         # make bench-scale: every configuration
    .venv/bin/python bench/bench_scale.py --configs w1,w2 --seconds 3 --rounds 1
    .venv/bin/python bench/bench_scale.py --invariants-only --configs w2,nodes2 --json out.json

PostgreSQL: --database-url, else EPR_BENCH_DATABASE_URL, else EPR_TEST_DATABASE_URL — its `public`
schema is DROPPED. Redis: --redis-url, else EPR_TEST_REDIS_URL — that database is FLUSHED.

Every configuration's servers run for the whole benchmark (idle but for their background threads when
not measured), so that the rounds can take them in turns: each round measures every configuration,
in alternating order (ABBA), every scenario alone (ITI-67 search, ITI-68 read, ITI-65 provide, PPQ-3/5
consent changes, ITI-81 trail, HL7 v2 over MLLP), the baseline's GET and POST on as many workers, then
all scenarios at once with the probes (the mixed window). Whatever else the machine does falls on every
configuration alike. It prints per configuration and scenario requests/s, p50/p99, errors, CPU per
request of the gateway's processes and of PostgreSQL, and each configuration against one worker (and
against one worker per core it can use); then the invariants: 5xx answers, stale consent decisions,
ITI-67 pages that repeat or skip a document, ITI-65 answers and HL7 v2 AAs stored other than once. It
writes bench/results/scale-<timestamp>.json and stops every process it started. It asserts nothing
(tests/functional/test_scale_invariants.py runs its mixed window and asserts the invariants).
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for path in (ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

import bench_mhd  # noqa: E402 - start_gateway, start_baseline, free_port
import scale_load  # noqa: E402
from load_client import (WARMUP_S, load_average, machine_busy_seconds, percentile,  # noqa: E402
                         tree_cpu_by_pid, tree_cpu_seconds, tree_cpu_with_reaped)
from processes import ProcessGroup, stop_on_signals  # noqa: E402

HCP_GLN = "7601000000002"
PROBE_GLN = HCP_GLN
PUBLIC_BASE = "https://epr-bench.invalid/fhir"  # one public name for every node (links, token audience)
BENCH_ISSUER = "https://epr-bench.invalid/dev-issuer"
# name: (nodes, workers per node)
CONFIGS = {"w1": (1, 1), "w2": (1, 2), "w4": (1, 4), "nodes2": (2, 1)}
SCENARIOS = ("search", "read", "provide", "consent", "trail", "mllp")
READS = ("search", "read", "trail")  # issue 26: 2 workers >= 1.7x one worker on the read scenarios
TARGET_TWO_WORKERS = 1.7
# Connections per worker of the configuration, per kind (alone), and in the mixed window.
ALONE = {"search": 8, "read": 8, "provide": 4, "consent": 2, "trail": 8, "mllp": 4, "baseline": 8,
         "baseline_provide": 4}
MIXED = {"search": 3, "read": 2, "provide": 1, "consent": 1, "trail": 1, "mllp": 1}


# -- the record in use -----------------------------------------------------------------------------
def spid(number: int) -> str:
    return f"76133761{number:010d}"


def prepare_record(data_dir: Path, database_url: str, redis_url: str, *, patients: int, docs: int) -> dict[str, Any]:
    """Through the use-cases, in this process: the demonstration patient (the MLLP sender's), `patients`
    records in use (fed, onboarded, the HCP granted the normal level, documents), and the probe patient
    with one document and its grant. Returns what the load needs (ids, SPIDs)."""
    import orjson

    from consent.principal import Principal
    from gateway.demo import DEMO_LOCAL_SYSTEM, load_demo_data
    from gateway.first_start import prepare
    from gateway.samples import patient_feed, provide_bundle
    from gateway.settings import Settings
    from gateway.wiring import build_runtime
    from load_client import document_spec

    settings = prepare(Settings(data_dir=data_dir, database_url=database_url, redis_url=redis_url, demo_data=False,
                                public_base_url=PUBLIC_BASE, audience=PUBLIC_BASE)).settings
    runtime = build_runtime(settings)
    services = runtime.services
    load_demo_data(documents=services.exchange, identities=services.identities, policies=services.policies,
                   base_url=PUBLIC_BASE)
    hcp = Principal(role="HCP", user_id=HCP_GLN, name="Dr. Bench Favre", purpose_of_use="NORM")
    admin = Principal(role="PADM", user_id="bench-policy-admin", name="Bench admin")
    record: dict[str, Any] = {"patients": [], "documents": [], "by_patient": {}, "local_system": DEMO_LOCAL_SYSTEM}
    for number in range(patients + 1):
        patient = spid(number + 1)
        local_id = f"SCALE-{number:04d}"
        feed = patient_feed(spid=patient, local_system=DEMO_LOCAL_SYSTEM, local_id=local_id, family=f"Scale{number}",
                            given="Anna", birth_date="1980-05-17", gender="female")
        services.identities.register_patient(principal=hcp, identifier_param=f"{DEMO_LOCAL_SYSTEM}|{local_id}",
                                           body=orjson.dumps(feed))
        services.policies.onboard(principal=admin, spid=patient)
        owner = Principal(role="PAT", user_id=patient, user_id_qualifier="urn:e-health-suisse:2015:epr-spid",
                          name=f"Anna Scale{number}", patient_spid=patient)
        grant, _ = services.policies.add(principal=owner, body=scale_load.consent_301(patient, HCP_GLN))
        count = 1 if number == patients else max(1, docs // max(patients, 1))
        ids = []
        for index in range(count):
            bundle = provide_bundle(spid=patient, documents=[document_spec(1000 * number + index, local_id=local_id)])
            answer = services.transactions.submit(principal=hcp, body=orjson.dumps(bundle), base_url=PUBLIC_BASE)
            ids += [e["response"]["location"].split("/DocumentReference/")[1].split("/")[0] for e in answer["entry"]
                    if "/DocumentReference/" in e["response"]["location"]]
        if number == patients:  # the probe patient: its grant is revoked and given again while the load runs
            record["probe"] = {"spid": patient, "document": ids[0], "grant": grant["id"], "gln": PROBE_GLN}
        else:
            record["patients"].append(patient)
            record["documents"] += ids
            record["by_patient"][patient] = ids
    runtime.close()
    record["provide_spid"] = record["patients"][0]
    record["provide_local_id"] = "SCALE-0000"
    return record


def shared_issuer(data_dir: Path) -> Path:
    """One trusted-issuers file for every node (the development issuer under one name): each node's own
    default would name its own port, and a token is accepted by the nodes that trust its issuer."""
    import json

    from gateway.auth.dev_issuer import JWKS_FILE

    trusted = data_dir / "auth" / "bench-trusted-issuers.json"
    trusted.write_text(json.dumps({"issuers": [{"issuer": BENCH_ISSUER, "jwks_file": JWKS_FILE}]}))
    return trusted


def tokens_for(data_dir: Path, record: dict[str, Any]) -> dict[str, Any]:
    from gateway.auth.dev_issuer import mint_token

    issuer = dict(data_dir=data_dir, issuer_url=BENCH_ISSUER, audience=PUBLIC_BASE)
    patients = [*record["patients"], record["probe"]["spid"]]
    return {"HCP": mint_token(role="HCP", gln=HCP_GLN, name="Dr. Bench Favre", **issuer),
            "PAT": {p: mint_token(role="PAT", spid=p, name="Anna Scale", **issuer) for p in patients}}


# -- processes -------------------------------------------------------------------------------------
def reset_stores(database_url: str, redis_url: str) -> None:
    import redis
    from sqlalchemy import create_engine, text

    engine = create_engine(database_url)
    with engine.begin() as connection:  # a fresh schema: every run starts from the same record
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    redis.Redis.from_url(redis_url).flushdb()


def start_config(group: ProcessGroup, name: str, work: Path, database_url: str, redis_url: str,
                 issuers: Path) -> dict[str, Any]:
    """The configuration's nodes (`serve` processes): their HTTPS and MLLP ports, their pids."""
    nodes, workers = CONFIGS[name]
    started = []
    for node in range(nodes):
        port, mllp = bench_mhd.free_port(), bench_mhd.free_port()
        processes: list = []
        gateway = bench_mhd.start_gateway(
            argparse.Namespace(workers=workers), work, processes, name=f"{name}-node{node}", port=port,
            # Every node with its metrics listener (the production shape; it also puts the workers'
            # instruments in multiprocess mode): the default address would go to the first node only.
            extra_env={"EPR_DATABASE_URL": database_url, "EPR_AUDIENCE": PUBLIC_BASE, "EPR_PUBLIC_BASE_URL": PUBLIC_BASE,
                       "EPR_MLLP_PORT": str(mllp), "EPR_TRUSTED_ISSUERS": str(issuers),
                       "EPR_METRICS_ADDRESS": f"127.0.0.1:{bench_mhd.free_port()}",
                       **({"EPR_REDIS_URL": redis_url} if redis_url else {})})
        for process in processes:
            group.adopt(process)
        started.append({"base": f"https://127.0.0.1:{port}", "mllp": mllp, "pid": gateway["process"].pid,
                        "gateway": gateway})
    return {"name": name, "nodes": started, "workers": nodes * workers}


def start_baselines(group: ProcessGroup, work: Path, gateway: dict[str, Any], bundle: bytes, worker_counts,
                    database_url: str) -> dict[int, dict[str, Any]]:
    baselines = {}
    for workers in sorted(set(worker_counts)):
        processes: list = []
        started = bench_mhd.start_baseline(argparse.Namespace(workers=workers), work, gateway, bundle, processes,
                                           store=database_url, name=f"baseline-w{workers}")
        for process in processes:
            group.adopt(process)
        baselines[workers] = {"nodes": [{"base": f"https://127.0.0.1:{started['port']}", "mllp": None,
                                         "pid": started["process"].pid}], "workers": workers}
    return baselines


def postgres_pid(database_url: str) -> int | None:
    """The local PostgreSQL server listening on the URL's port (its CPU is counted per request), if any."""
    port = urlsplit(database_url.replace("+psycopg", "")).port or 5432
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"postgres") and b"-p" in argv and argv[argv.index(b"-p") + 1:][:1] == [
                str(port).encode()]:
            return int(entry)
    return None


# -- windows ---------------------------------------------------------------------------------------
_WINDOWS = itertools.count(1)


def window(pool, *, target: dict[str, Any], actors: dict[str, int], args, shared: dict[str, Any],
           probes: dict[str, Any] | None = None, db_pid: int | None) -> dict[str, Any]:
    """One measured window: `actors` (kind → connections) against `target`'s nodes from --client-procs
    load processes; the CPU of its processes and of PostgreSQL over the window."""
    procs = max(1, args.client_procs)
    number = next(_WINDOWS)  # every window's documents and messages are new ones (their ids say which window)
    t_begin = time.time() + 0.5
    t_start = t_begin + WARMUP_S
    t_end = t_start + args.seconds
    specs = []
    for i in range(procs):
        share = {k: n // procs + (1 if i < n % procs else 0) for k, n in actors.items()}
        specs.append({**shared, "nodes": [{"base": n["base"], "mllp": n["mllp"]} for n in target["nodes"]],
                      "actors": [{"kind": k, "connections": n} for k, n in share.items() if n],
                      "probes": probes if i == 0 else None, "seed": i, "t_begin": t_begin, "t_start": t_start,
                      "t_end": t_end, "provide": {**shared["provide"], "run": (shared["run"] * 1000 + number) * 10 + i},
                      "mllp": {**shared["mllp"], "run": (shared["mllp"]["run"] * 1000 + number) * 10 + i}})
    pending = pool.map_async(scale_load.run, specs)
    pids = [n["pid"] for n in target["nodes"]]
    time.sleep(max(0.0, t_start - time.time()))
    before = [sum(tree_cpu_seconds(p) for p in pids), tree_cpu_with_reaped(db_pid) if db_pid else 0.0,
              machine_busy_seconds(), {p: tree_cpu_by_pid(p) for p in pids}]
    time.sleep(max(0.0, t_end - time.time()))
    after = [sum(tree_cpu_seconds(p) for p in pids), tree_cpu_with_reaped(db_pid) if db_pid else 0.0,
             machine_busy_seconds(), {p: tree_cpu_by_pid(p) for p in pids}]
    results = pending.get(timeout=args.seconds + WARMUP_S + 120)
    server_cpu, db_cpu, machine = (after[i] - before[i] for i in range(3))
    client_cpu = sum(r["cpu_s"] for r in results)
    kinds: dict[str, dict[str, Any]] = {}
    for result in results:
        for kind, figures in result["by_kind"].items():
            merged = kinds.setdefault(kind, {"latencies": [], "errors": [], "server_errors": 0})
            merged["latencies"] += figures["latencies"]
            merged["errors"] += figures["errors"]
            merged["server_errors"] += figures["server_errors"]
    answered = sum(len(k["latencies"]) for k in kinds.values())
    # The busiest process of the configuration's over the window: how evenly the workers shared the load.
    per_process = sorted((after[3][p].get(pid, 0) - before[3][p].get(pid, 0)) / args.seconds
                         for p in pids for pid in after[3][p])
    invariants = [r["invariants"] for r in results]
    return {
        "kinds": {kind: {"requests": len(k["latencies"]), "req_per_s": len(k["latencies"]) / args.seconds,
                         "p50_ms": percentile(sorted(k["latencies"]), 0.5) * 1000,
                         "p99_ms": percentile(sorted(k["latencies"]), 0.99) * 1000,
                         "errors": len(k["errors"]), "error_samples": k["errors"][:3],
                         "server_errors": k["server_errors"]} for kind, k in kinds.items()},
        "server_cpu_cores": server_cpu / args.seconds,
        "server_cpu_ms_per_req": 1000 * server_cpu / answered if answered else float("nan"),
        "db_cpu_ms_per_req": 1000 * db_cpu / answered if answered and db_pid else float("nan"),
        "client_cpu_cores": client_cpu / args.seconds,
        "other_cpu_cores": max(0.0, machine - server_cpu - db_cpu - client_cpu) / args.seconds,
        "busiest_processes": [round(c, 2) for c in per_process[-max(1, target["workers"]) - 1:]],
        "load": load_average(),
        "provided": [p for r in results for p in r["provided"]],
        "acknowledged": [a for r in results for a in r["acknowledged"]],
        "codes": {code: sum(r["codes"].get(code, 0) for r in results) for code in {c for r in results for c in r["codes"]}},
        "invariants": invariants[0] if invariants else {},
    }


def stored_counts(database_url: str, unique_ids: list[str]) -> dict[str, int]:
    """uniqueId → rows in document_entry (each acknowledged document must be there exactly once)."""
    from sqlalchemy import bindparam, create_engine, text

    counts = {u: 0 for u in unique_ids}
    engine = create_engine(database_url)
    query = text("SELECT unique_id, count(*) FROM document_entry WHERE unique_id IN :ids GROUP BY unique_id"
                 ).bindparams(bindparam("ids", expanding=True))
    with engine.connect() as connection:
        chunk = 5000
        ordered = sorted(counts)
        for start in range(0, len(ordered), chunk):
            for unique_id, count in connection.execute(query, {"ids": ordered[start:start + chunk]}):
                counts[unique_id] = count
    engine.dispose()
    return counts


def check_invariants(measured: dict[str, Any], database_url: str) -> dict[str, Any]:
    """What a mixed window must show: nothing answered 5xx, no stale decision, pages that neither repeat
    nor skip, every ITI-65 answered 200 and every HL7 v2 AA stored exactly once."""
    probe = measured["invariants"]
    provided = [u for u, _ in measured["provided"]]
    acknowledged = sorted(set(measured["acknowledged"]))
    stored = stored_counts(database_url, provided + acknowledged)
    return {
        "server_errors": sum(k["server_errors"] for k in measured["kinds"].values()),
        "stale_decisions": probe.get("stale_decisions"), "late_grants": probe.get("late_grants"),
        "revocations": probe.get("revocations"), "decisions_checked": probe.get("decisions_checked"),
        "pages_walked": probe.get("pages_walked"), "paged_documents": probe.get("paged_documents"),
        "repeats": probe.get("repeats"), "skips": probe.get("skips"),
        "probe_failures": probe.get("probe_failures"),
        "provides_acknowledged": len(provided), "provides_not_stored_once": sum(stored[u] != 1 for u in provided),
        "mllp_acknowledged": len(acknowledged), "mllp_answers": measured["codes"],
        "mllp_not_stored_once": sum(stored[u] != 1 for u in acknowledged),
    }


# -- the run ---------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    stop_on_signals()  # a SIGTERM/SIGHUP still stops every server below (the ProcessGroup)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--configs", default="w1,w2,w4,nodes2", help="of " + ", ".join(CONFIGS) + " (default all)")
    parser.add_argument("--seconds", type=float, default=5.0, help="each measured window (default 5)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds over every configuration (default 2)")
    parser.add_argument("--patients", type=int, default=20, help="records in use (default 20)")
    parser.add_argument("--docs", type=int, default=200, help="documents provided before the load (default 200)")
    parser.add_argument("--client-procs", type=int, default=1, help="load processes (default 1)")
    parser.add_argument("--invariants-only", action="store_true", help="the mixed window only (the test's run)")
    parser.add_argument("--no-redis", action="store_true",
                        help="run without Redis (to see the probe find stale decisions: the control)")
    parser.add_argument("--database-url")
    parser.add_argument("--redis-url")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = [c for c in configs if c not in CONFIGS]
    if unknown or not configs or args.seconds <= 0 or args.rounds < 1 or args.patients < 1:
        parser.error(f"--configs of {', '.join(CONFIGS)}; positive --seconds, --rounds and --patients")
    database_url = (args.database_url or os.environ.get("EPR_BENCH_DATABASE_URL")
                    or os.environ.get("EPR_TEST_DATABASE_URL"))
    redis_url = args.redis_url or os.environ.get("EPR_TEST_REDIS_URL")
    if not database_url or not database_url.startswith("postgresql") or not redis_url:
        parser.error("needs PostgreSQL and Redis: --database-url/--redis-url or EPR_TEST_DATABASE_URL/"
                     "EPR_TEST_REDIS_URL (scripts/test_services.sh start; its schema is dropped, its Redis db flushed)")

    work = Path(tempfile.mkdtemp(prefix="epr-bench-scale-"))
    print(f"resetting {urlsplit(database_url).netloc} and Redis; preparing {args.patients} records and "
          f"{args.docs} documents ...", flush=True)
    reset_stores(database_url, redis_url)
    record = prepare_record(work / "data", database_url, redis_url, patients=args.patients, docs=args.docs)
    issuers = shared_issuer(work / "data")
    tokens = tokens_for(work / "data", record)
    pool = None
    with ProcessGroup(grace_seconds=30) as group:
        try:
            started = {}
            for name in configs:
                print(f"starting {name} ({CONFIGS[name][0]} node(s) x {CONFIGS[name][1]} worker(s)) ...", flush=True)
                started[name] = start_config(group, name, work, database_url, "" if args.no_redis else redis_url,
                                             issuers)
            first = started[configs[0]]["nodes"][0]
            bundle = search_answer(first, tokens, record)
            baselines = {} if args.invariants_only else start_baselines(
                group, work, first["gateway"], bundle, [started[c]["workers"] for c in configs], database_url)
            db_pid = postgres_pid(database_url)
            shared = {"ca": first["gateway"]["ca"], "tokens": tokens, "patients": record["patients"],
                      "documents": record["documents"], "run": 1 + int(time.time()) % 10**6,
                      "provide": {"spid": record["provide_spid"], "local_id": record["provide_local_id"]},
                      "mllp": {"local_system_oid": record["local_system"].removeprefix("urn:oid:"),
                               "local_id": "DEMO-0001", "run": 1 + int(time.time()) % 10**5}}
            pool = multiprocessing.get_context("spawn").Pool(max(1, args.client_procs))
            rounds = []
            for number in range(args.rounds):
                order = configs if number % 2 == 0 else list(reversed(configs))
                rounds.append(measure_round(pool, started, baselines, order, args, shared, record, db_pid,
                                            database_url, number))
            report = build_report(args, configs, rounds)
            print_report(report)
            out = BENCH / "results" / f"scale-{datetime.now(UTC).strftime('%Y%m%dT%H%M%SZ')}.json"
            out.parent.mkdir(parents=True, exist_ok=True)
            import orjson

            out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY))
            if args.json:
                args.json.write_bytes(out.read_bytes())
            print(f"\nresults: {out}")
            return 0
        finally:
            if pool is not None:
                pool.terminate()
                pool.join()


def search_answer(node: dict[str, Any], tokens: dict[str, Any], record: dict[str, Any]) -> bytes:
    """A real ITI-67 answer (10 entries): what the baseline answers every GET with."""
    import httpx

    from load_client import client_ssl_context

    path = scale_load.search_path(record["patients"][0], 1)
    answer = httpx.get(node["base"] + path, headers={"Authorization": f"Bearer {tokens['HCP']}"},
                       verify=client_ssl_context(node["gateway"]["ca"]))
    if answer.status_code != 200 or not answer.json().get("entry"):
        raise SystemExit(f"ITI-67 answered {answer.status_code}: {answer.text[:300]}")
    return answer.content


def measure_round(pool, started, baselines, order, args, shared, record, db_pid, database_url,
                  number) -> dict[str, dict[str, Any]]:
    """One round. Each scenario is measured on every configuration back to back (then the next
    scenario): the figures compared with one another come from windows seconds apart, not minutes. Why:
    this machine's speed drifts (the same window's CPU per request varied ×2 within minutes on a quiet
    machine), and taking every scenario of one configuration before the next compared w1 and w2 across
    that drift. The baselines follow the same way, then each configuration's mixed window."""
    measured: dict[str, dict[str, Any]] = {name: {} for name in order}
    kinds = () if args.invariants_only else SCENARIOS
    for kind in kinds:
        for name in order:
            config = started[name]
            measured[name][kind] = window(pool, target=config, actors={kind: ALONE[kind] * config["workers"]},
                                          args=args, shared=shared, db_pid=db_pid)
    if not args.invariants_only:
        for kind in ("baseline", "baseline_provide"):
            for name in order:
                baseline = baselines.get(started[name]["workers"])
                if baseline is not None:
                    measured[name][kind] = window(pool, target=baseline, actors={
                        kind: ALONE[kind] * started[name]["workers"]}, args=args, shared=shared, db_pid=db_pid)
    for name in order:
        config = started[name]
        per_node = CONFIGS[name][1]
        probes = {"consent": {**record["probe"], "connections_per_node": 2 * per_node},
                  "paging": {"spid": record["provide_spid"], "count": 7,
                             "known": record["by_patient"][record["provide_spid"]]}}
        mixed = window(pool, target=config, actors={k: n * config["workers"] for k, n in MIXED.items()}, args=args,
                       shared=shared, probes=probes, db_pid=db_pid)
        mixed["checked"] = check_invariants(mixed, database_url)
        record["probe"]["grant"] = mixed["invariants"].get("grant", record["probe"]["grant"])
        measured[name]["mixed"] = mixed
        line = ", ".join(f"{k} {measured[name][k]['kinds'].get(k, {}).get('req_per_s', 0):.0f}/s" for k in kinds)
        checked = mixed["checked"]
        print(f"  round {number + 1} {name}: {line}{'; ' if line else ''}mixed "
              f"{sum(k['req_per_s'] for k in mixed['kinds'].values()):.0f}/s, stale {checked['stale_decisions']}, "
              f"repeats {checked['repeats']}, skips {checked['skips']}, 5xx {checked['server_errors']} "
              f"(load {load_average():.1f})", flush=True)
    return measured


def build_report(args, configs: list[str], rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Per configuration and scenario: the median over the rounds, and each round's ratio to one worker."""
    cores = os.cpu_count() or 1
    table: dict[str, dict[str, Any]] = {}
    for name in configs:
        workers = CONFIGS[name][0] * CONFIGS[name][1]
        for kind in (*SCENARIOS, "baseline", "baseline_provide"):
            windows = [r[name][kind] for r in rounds if kind in r[name]]
            if not windows:
                continue
            figures = [w["kinds"].get(kind, {"req_per_s": 0.0, "p50_ms": float("nan"), "p99_ms": float("nan"),
                                             "errors": 0, "server_errors": 0}) for w in windows]
            row = {"req_per_s": median(f["req_per_s"] for f in figures),
                   "p50_ms": median(f["p50_ms"] for f in figures), "p99_ms": median(f["p99_ms"] for f in figures),
                   "errors": sum(f["errors"] for f in figures), "server_errors": sum(f["server_errors"] for f in figures),
                   "server_cpu_ms_per_req": median(w["server_cpu_ms_per_req"] for w in windows),
                   "db_cpu_ms_per_req": median(w["db_cpu_ms_per_req"] for w in windows),
                   "busiest_processes": windows[-1]["busiest_processes"],
                   "error_samples": next((f.get("error_samples") for f in figures if f.get("errors")), [])}
            if "w1" in configs and kind in rounds[0]["w1"]:
                speedups = [r[name][kind]["kinds"].get(kind, {}).get("req_per_s", 0.0)
                            / max(r["w1"][kind]["kinds"].get(kind, {}).get("req_per_s", 0.0), 1e-9) for r in rounds]
                row["vs_one_worker"] = median(speedups)
                row["vs_one_worker_per_core"] = row["vs_one_worker"] / min(workers, cores)
            table.setdefault(name, {})[kind] = row
        for kind, bare in (("search", "baseline"), ("provide", "baseline_provide")):
            if kind in table.get(name, {}) and bare in table[name]:
                table[name][kind]["vs_baseline"] = median(
                    r[name][kind]["kinds"].get(kind, {}).get("req_per_s", 0.0)
                    / max(r[name][bare]["kinds"].get(bare, {}).get("req_per_s", 0.0), 1e-9) for r in rounds)
    invariants = {name: [r[name]["mixed"]["checked"] for r in rounds] for name in configs}
    mixed = {name: {"req_per_s": median(sum(k["req_per_s"] for k in r[name]["mixed"]["kinds"].values()) for r in rounds),
                    "kinds": rounds[-1][name]["mixed"]["kinds"]} for name in configs}
    reads = {}
    if "w1" in configs and "w2" in configs and not args.invariants_only:
        reads = {kind: table["w2"][kind]["vs_one_worker"] for kind in READS}
    return {"when": datetime.now(UTC).isoformat(timespec="seconds"), "cpus": cores, "args": vars(args) | {
                "json": str(args.json) if args.json else None},
            "table": table, "mixed": mixed, "invariants": invariants, "two_workers_on_reads": reads,
            "loads": [[r[name]["mixed"]["load"] for name in configs] for r in rounds],
            "other_cpu_cores": max((w["other_cpu_cores"] for r in rounds for c in r.values() for w in c.values()),
                                   default=0.0)}


def print_report(report: dict[str, Any]) -> None:
    print(f"\n{report['cpus']} CPUs; windows of {report['args']['seconds']:g} s, {report['args']['rounds']} round(s); "
          f"load during the mixed windows {report['loads']}")
    if report["table"]:
        print(f"\n{'config':<8}{'scenario':<18}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'errors':>8}{'5xx':>5}"
              f"{'gw ms cpu':>11}{'db ms cpu':>11}{'x 1 worker':>12}{'per core':>10}{'x baseline':>12}")
        for name, rows in report["table"].items():
            for kind, row in rows.items():
                print(f"{name:<8}{kind:<18}{row['req_per_s']:>9.1f}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
                      f"{row['errors']:>8}{row['server_errors']:>5}{row['server_cpu_ms_per_req']:>11.3f}"
                      f"{row['db_cpu_ms_per_req']:>11.3f}{_ratio(row.get('vs_one_worker')):>12}"
                      f"{_ratio(row.get('vs_one_worker_per_core')):>10}{_ratio(row.get('vs_baseline')):>12}")
    if report["two_workers_on_reads"]:
        reads = report["two_workers_on_reads"]
        verdict = "PASS" if min(reads.values()) >= TARGET_TWO_WORKERS else "FAIL"
        print(f"\n2 workers against 1 on the reads (target >= {TARGET_TWO_WORKERS}): "
              + ", ".join(f"{k} {v:.2f}" for k, v in reads.items()) + f": {verdict}")
    print("\nmixed load, all scenarios at once, with the probes:")
    for name, runs in report["invariants"].items():
        for number, checked in enumerate(runs, 1):
            print(f"  {name} round {number}: {report['mixed'][name]['req_per_s']:.0f} req/s (median); "
                  f"5xx {checked['server_errors']}; stale decisions {checked['stale_decisions']} of "
                  f"{checked['decisions_checked']} checked after {checked['revocations']} revocations (late grants "
                  f"{checked['late_grants']}); ITI-67 pages {checked['pages_walked']}: repeats {checked['repeats']}, "
                  f"skips {checked['skips']}; ITI-65 acknowledged {checked['provides_acknowledged']}, not stored once "
                  f"{checked['provides_not_stored_once']}; HL7 v2 AA {checked['mllp_acknowledged']} "
                  f"{checked['mllp_answers']}, not stored once {checked['mllp_not_stored_once']}"
                  + (f"; PROBE FAILURES {checked['probe_failures']}" if checked["probe_failures"] else ""))
    if report["other_cpu_cores"] > 0.25:
        print(f"WARNING other processes used up to {report['other_cpu_cores']:.2f} cores during the windows: "
              "compare configurations within a round only")


def _ratio(value) -> str:
    return "-" if value is None else f"{value:.2f}"


if __name__ == "__main__":
    sys.exit(main())
