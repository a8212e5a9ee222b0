"""Delivery benchmark (issue 24): documents (≈50 KB, a generated Infomed export migrated into the record,
which fills the outbox) delivered to the community stub on loopback — the stub in a process of its own
(it shares no interpreter lock with the deliverer) — and, in the same run, a raw baseline that only
POSTs the same MTOM bytes to the same stub over the same kind of connections at the same concurrency.

    /path/to/python bench/bench_delivery.py                            # 20,000 documents, SQLite
    /path/to/python bench/bench_delivery.py --documents 2000           # a quick look
    /path/to/python bench/bench_delivery.py --postgres                 # EPR_TEST_DATABASE_URL (reset!)
    /path/to/python bench/bench_delivery.py --with-migration --documents 100000
        # the migration and the deliverer at once, in two processes (as `epr-gateway migrate` beside
        # `serve`): documents stored per second while the outbox drains

Reports deliveries/s, the ratio to the baseline, p99 of one attempt (claim to answer, from the attempts
kept in the outbox), the deliverer process's peak RSS and CPU. The baseline re-POSTs the last requests
the stub received (their assertions are still valid): the stub answers each with the duplicate
submission set error after the same parsing and checks. It asserts nothing; figures are noisy on a
shared machine.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
for path in (ROOT, ROOT / "tests", ROOT / "bench"):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_migrate import GLN, cpu_seconds, export_dir, media, peak_rss_mb  # noqa: E402
from processes import stop_on_signals  # noqa: E402

KEEP_BODIES = 2000


# -- the stub's process ---------------------------------------------------------------------------------
def stub_process(folder: str, patients: list[tuple[str, str]], control) -> None:
    from community_stub import CommunityStub, Patient

    stub = CommunityStub(Path(folder), patients=[Patient(s, m) for s, m in patients],
                         keep_request_bodies=KEEP_BODIES)
    # The generated export's event code (Infomed's table passes SNOMED CT 386053000 through): not in the CH
    # eventCodeList value set the stub holds; the benchmark measures delivery, not that refusal.
    stub.codes.add("eventCodeList", "386053000", "2.16.840.1.113883.6.96")
    stub.codes.add("classCode", "4241000179101", "2.16.840.1.113883.6.96")
    stub.start()
    control.send(str(stub.write_communities_file()))
    while True:
        command, argument = control.recv()
        if command == "counts":
            import resource

            used = resource.getrusage(resource.RUSAGE_SELF)
            control.send({**stub.counts(), "cpu_seconds": round(used.ru_utime + used.ru_stime, 1)})
        elif command == "bodies":  # the last ITI-41 requests, for the baseline
            out = Path(argument)
            out.mkdir(parents=True, exist_ok=True)
            kept = [r for r in stub.requests_to("iti41") if r.body is not None]
            for n, request in enumerate(kept):
                (out / f"{n:05d}.body").write_bytes(request.body)
                (out / f"{n:05d}.type").write_text(request.headers["Content-Type"])
            control.send((len(kept), stub.iti41_url))
        elif command == "stop":
            stub.stop()
            control.send("stopped")
            return


def patients_of(export: Path) -> list[tuple[str, str]]:
    """(SPID, the community's MPI-PID) of every patient of the export's feed with a SPID."""
    found = []
    for n, line in enumerate((export / "patients.ndjson").read_bytes().splitlines()):
        if line.strip():
            spid = next((i["value"] for i in json.loads(line)["identifier"]
                         if i["system"] == "urn:oid:2.16.756.5.30.1.127.3.10.3"), None)
            if spid:
                found.append((spid, f"9{n:08d}"))
    return found


# -- child phases ---------------------------------------------------------------------------------------
def settings_for(data_dir: Path, database_url: str | None, communities: str, concurrency: int):
    from gateway.first_start import prepare
    from gateway.settings import Settings

    return prepare(Settings(data_dir=data_dir, database_url=database_url, demo_data=False, communities=communities,
                            delivery_in_serve=False, delivery_concurrency=concurrency,
                            delivery_poll_seconds=0.05)).settings


def phase_fill(export: Path, data_dir: Path, database_url: str | None, communities: str, batch: int,
               workers: int) -> dict:
    """The export migrated into the record: every document stored and its outbox row written."""
    from adapters.infomed.xdm.codes import CodeTables
    from gateway.exchanges.imports import ImportExchange
    from gateway.migration.feed import feed_patients
    from gateway.migration.job import MigrationJob, migration_principal
    from gateway.migration.journal import Journal
    from gateway.wiring import background_checkpoints, build_runtime

    runtime = build_runtime(settings_for(data_dir, database_url, communities, 1))
    services = runtime.services
    fed = feed_patients(services, export / "patients.ndjson", onboard=True)
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=Journal(engine=runtime.engine, keyring=runtime.keyring), tables=CodeTables.load(),
                       principal=migration_principal(GLN), batch=batch, workers=workers)
    (data_dir / "fed").write_text("1")  # the drain may start (the patients are in the MPI)
    started, cpu = time.perf_counter(), cpu_seconds()
    with background_checkpoints(runtime):
        job.run(media(export))
    seconds = time.perf_counter() - started
    runtime.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "documents": job.counts.documents,
            "outcomes": job.counts.outcomes, "feed": fed, "peak_rss_mb": peak_rss_mb()}


def phase_drain(data_dir: Path, database_url: str | None, communities: str, concurrency: int, expected: int) -> dict:
    """This process's deliverer until `expected` rows are delivered (or settled otherwise)."""
    from sqlalchemy import func, select

    from adapters.cara.store.outbox_schema import community_delivery_attempt
    from gateway.migration.collector import collector_held_back
    from gateway.wiring import build_runtime, deliverer

    while not (data_dir / "fed").exists():
        time.sleep(0.1)
    runtime = build_runtime(settings_for(data_dir, database_url, communities, concurrency))
    running = deliverer(runtime)
    with collector_held_back():  # as `epr-gateway deliver` runs
        started, cpu = time.perf_counter(), cpu_seconds()
        running.start()
        try:
            while True:
                counts, _ = runtime.delivery.status()
                states = counts[0].by_state if counts else {}
                settled = sum(n for s, n in states.items() if s not in ("pending", "in-flight", "waiting-patient"))
                if settled >= expected:
                    break
                time.sleep(0.5)  # (counting the outbox reads every row: not too often, beside the deliverer)
        finally:
            seconds = time.perf_counter() - started
            running.stop()
        cpu_used = cpu_seconds() - cpu
    with runtime.engine.connect() as connection:
        durations = sorted((a - b).total_seconds() for a, b in connection.execute(select(
            community_delivery_attempt.c.finished_at, community_delivery_attempt.c.started_at)))
        attempts = connection.execute(select(func.count()).select_from(community_delivery_attempt)).scalar_one()
    runtime.close()
    return {"seconds": seconds, "cpu_seconds": cpu_used, "states": states, "attempts": attempts,
            "p50_ms": 1000 * durations[len(durations) // 2] if durations else None,
            "p99_ms": 1000 * durations[int(len(durations) * 0.99)] if durations else None,
            "peak_rss_mb": peak_rss_mb()}


def phase_baseline(bodies: Path, url: str, communities: str, concurrency: int, count: int) -> dict:
    """The same MTOM bytes POSTed to the same stub: `concurrency` threads, one HTTPS client as the
    deliverer's transport (httpx, the community's CA, the gateway's client certificate)."""
    from adapters.community.config import load_communities
    from adapters.community.transport import HttpsTransport

    [community] = load_communities(communities)
    transport = HttpsTransport(community.tls)
    requests = [((bodies / f"{p.stem}.type").read_text(), p.read_bytes()) for p in sorted(bodies.glob("*.body"))]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    next_index = iter(range(count))

    def post() -> None:
        for n in next_index:
            content_type, body = requests[n % len(requests)]
            began = time.perf_counter()
            answer = transport.post(url, body=body, content_type=content_type, timeout=30)
            with lock:
                latencies.append(time.perf_counter() - began)
                statuses[answer.status] = statuses.get(answer.status, 0) + 1

    started, cpu = time.perf_counter(), cpu_seconds()
    threads = [threading.Thread(target=post) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    transport.close()
    latencies.sort()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "posts": len(latencies), "statuses": statuses,
            "p99_ms": 1000 * latencies[int(len(latencies) * 0.99)], "peak_rss_mb": peak_rss_mb()}


def start_child(*args: str) -> subprocess.Popen:
    command = [sys.executable, __file__, *args]
    spy = os.environ.get("BENCH_PYSPY")  # "drain" (or another phase): sampled by py-spy (collapsed stacks in /tmp)
    if spy and spy == args[1]:
        command = ["py-spy", "record", "--gil", "--threads", "--rate", "200", "-f", "raw", "-o", f"/tmp/bench-delivery-{spy}.txt", "--",
                   *command]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})


def child_result(process: subprocess.Popen) -> dict:
    out, _ = process.communicate()
    if process.returncode:
        raise SystemExit(f"a phase failed (exit {process.returncode})")
    return json.loads([line for line in out.splitlines() if line.startswith("{")][-1])


# -- the run ------------------------------------------------------------------------------------------
def main() -> None:
    stop_on_signals()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--documents", type=int, default=20_000)
    parser.add_argument("--patients", type=int, default=None, help="default: a tenth of the documents")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--postgres", action="store_true", help="EPR_TEST_DATABASE_URL, reset first")
    parser.add_argument("--with-migration", action="store_true", help="migrate and deliver at once")
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--baseline-posts", type=int, default=None, help="default: as many as documents, "
                        "at most 10,000")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "epr-bench-delivery")
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    parser.add_argument("--args", help=argparse.SUPPRESS)
    options = parser.parse_args()
    if options.phase:
        values = json.loads(options.args)
        phase = {"fill": phase_fill, "drain": phase_drain, "baseline": phase_baseline}[options.phase]
        for key in ("export", "data_dir", "bodies"):
            if key in values:
                values[key] = Path(values[key])
        print(json.dumps(phase(**values)))
        return

    patients = options.patients or max(1, options.documents // 10)
    export = export_dir(options.cache_dir, options.documents, patients, 1)
    database_url = None
    if options.postgres:
        from bench_migrate import reset_postgres

        database_url = os.environ["EPR_TEST_DATABASE_URL"]
        reset_postgres(database_url)
    work = Path(tempfile.mkdtemp(prefix="bench-delivery-"))
    context = multiprocessing.get_context("spawn")
    control, stub_end = context.Pipe()
    stub = context.Process(target=stub_process, args=(str(work / "stub"), patients_of(export), stub_end), daemon=True)
    stub.start()
    try:
        communities = control.recv()
        common = {"data_dir": str(work / "data"), "database_url": database_url, "communities": communities}
        fill_args = {**common, "export": str(export), "batch": options.batch, "workers": options.workers}
        drain_args = {**common, "concurrency": options.concurrency, "expected": options.documents}
        if options.with_migration:
            fill = start_child("--phase", "fill", "--args", json.dumps(fill_args))
            drain = start_child("--phase", "drain", "--args", json.dumps(drain_args))
            filled, drained = child_result(fill), child_result(drain)
        else:
            filled = child_result(start_child("--phase", "fill", "--args", json.dumps(fill_args)))
            drained = child_result(start_child("--phase", "drain", "--args", json.dumps(drain_args)))
        control.send(("bodies", str(work / "bodies")))
        kept, url = control.recv()
        posts = options.baseline_posts or min(options.documents, 10_000)
        baseline = child_result(start_child("--phase", "baseline", "--args", json.dumps(
            {"bodies": str(work / "bodies"), "url": url, "communities": communities,
             "concurrency": options.concurrency, "count": posts})))
        control.send(("counts", None))
        counts = control.recv()
        control.send(("stop", None))
        control.recv()
    finally:
        stub.join(10)
        if stub.is_alive():
            stub.terminate()
    report(options, filled, drained, baseline, counts, kept)


def report(options, filled: dict, drained: dict, baseline: dict, counts: dict, kept: int) -> None:
    rate = options.documents / drained["seconds"]
    raw = baseline["posts"] / baseline["seconds"]
    load = os.getloadavg()
    print(f"\n{options.documents} documents, {options.concurrency} at once, "
          f"{'PostgreSQL' if options.postgres else 'SQLite'}, load {load[0]:.1f}/{load[1]:.1f}")
    print(f"migration (fills the outbox){' beside the deliverer' if options.with_migration else ''}: "
          f"{filled['documents'] / filled['seconds']:,.0f} docs/s stored ({filled['seconds']:.1f} s), "
          f"outcomes {filled['outcomes']}")
    print(f"delivery:  {rate:,.0f} deliveries/s ({drained['seconds']:.1f} s), states {drained['states']}, "
          f"{drained['attempts']} attempts; attempt p50 {drained['p50_ms']:.1f} ms, p99 {drained['p99_ms']:.1f} ms; "
          f"CPU {1000 * drained['cpu_seconds'] / options.documents:.2f} ms/delivery; "
          f"peak RSS {drained['peak_rss_mb']:.0f} MB")
    print(f"baseline:  {raw:,.0f} POSTs/s of the same bytes ({baseline['posts']} of {kept} kept requests, "
          f"statuses {baseline['statuses']}), p99 {baseline['p99_ms']:.1f} ms; "
          f"CPU {1000 * baseline['cpu_seconds'] / baseline['posts']:.2f} ms/POST")
    print(f"ratio {rate / raw:.2f}   (target: >= 500 deliveries/s, ratio >= 0.5"
          + (", >= 1,000 docs/s stored beside it" if options.with_migration else "") + ")")
    print(f"stub (its own process): {counts}")


if __name__ == "__main__":
    main()
