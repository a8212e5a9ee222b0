"""PIXm/PDQm benchmark: an MPI of --patients patients, then ITI-83 look-ups (and ITI-78 searches) over
HTTPS against a real gateway server.

    /path/to/python bench/bench_pix.py --patients 100000 --seconds 10 [--concurrency 8] [--workers 1]

It starts `epr-gateway serve` on a fresh data directory (as bench_mhd.py does, whose helpers it
reuses), loads the patients straight into the MPI through `DatabasePatientIndex.load_new_patients`
(sealed demographics and every keyed-hash index row, as ITI-104 writes them, in batches: the feed's
per-patient look-ups would take the benchmark's time), then drives three scenarios for --seconds:
ITI-83 by local id (all domains), ITI-83 with targetSystem=SPID, and ITI-78 by family+given+birthdate.
Each request names a random patient. It prints a table and stops every process it started.
It reports; it asserts nothing.
"""

from __future__ import annotations

import argparse
import multiprocessing
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for path in (str(ROOT), str(BENCH)):
    if path not in sys.path:
        sys.path.insert(0, path)

import bench_mhd  # noqa: E402 - the shared process, load and report helpers

LOCAL_SYSTEM = "urn:oid:2.16.756.5.30.1.999.2.1"
SPID_SYSTEM = "urn:oid:2.16.756.5.30.1.127.3.10.3"
FAMILIES = ("Muster", "Meier", "Müller", "Schmid", "Keller", "Weber", "Huber", "Schneider", "Meyer", "Steiner",
            "Fischer", "Gerber", "Brunner", "Baumann", "Frei", "Zimmermann", "Moser", "Widmer", "Wyss", "Graf")
GIVENS = ("Anna", "Hans", "Maria", "Peter", "Ursula", "Daniel", "Ruth", "Thomas", "Elisabeth", "Marco",
          "Laura", "Luca", "Sofia", "Noah", "Mia", "Leon", "Emma", "Elias", "Lina", "Nino")
BATCH = 5_000
PATHS_PER_SCENARIO = 4_000


def spid(index: int) -> str:
    return f"7613376{index:011d}"


def demographics(index: int) -> tuple[str, str, str, str]:
    rnd = random.Random(index)
    birth = f"{rnd.randint(1930, 2020)}-{rnd.randint(1, 12):02d}-{rnd.randint(1, 28):02d}"
    return rnd.choice(FAMILIES), rnd.choice(GIVENS), birth, rnd.choice(("female", "male"))


def load_patients(settings, count: int) -> float:
    """Feed `count` patients into the server's database; returns the patients per second."""
    from adapters.cara.crypto import Keyring
    from adapters.cara.model import Identifier, PatientRecord
    from adapters.cara.store.database import make_engine
    from adapters.cara.store.patients import DatabasePatientIndex

    engine = make_engine(settings.resolved_database_url)
    index = DatabasePatientIndex(engine=engine, keyring=Keyring.load(settings.keyring_path))
    started = time.monotonic()
    try:
        for first in range(0, count, BATCH):
            feeds = []
            for i in range(first, min(first + BATCH, count)):
                family, given, birth, gender = demographics(i)
                feeds.append((Identifier(LOCAL_SYSTEM, f"BENCH-{i}"),
                              PatientRecord("", spid(i), family, (given,), birth, gender)))
            index.load_new_patients(feeds)
            print(f"  {min(first + BATCH, count)} patients", end="\r", flush=True)
    finally:
        engine.dispose()
    return count / (time.monotonic() - started)


def scenario_paths(count: int) -> dict[str, list[str]]:
    rnd = random.Random(42)
    picks = [rnd.randrange(count) for _ in range(PATHS_PER_SCENARIO)]

    def encoded(path: str) -> str:
        return quote(path, safe="/?=&:,$")

    pdq = []
    for i in picks:
        family, given, birth, _ = demographics(i)
        pdq.append(encoded(f"/fhir/Patient?family={family}&given={given}&birthdate={birth}"))
    return {
        "ITI-83 all": [encoded(f"/fhir/Patient/$ihe-pix?sourceIdentifier={LOCAL_SYSTEM}|BENCH-{i}") for i in picks],
        "ITI-83 SPID": [encoded(f"/fhir/Patient/$ihe-pix?sourceIdentifier={LOCAL_SYSTEM}|BENCH-{i}"
                                f"&targetSystem={SPID_SYSTEM}") for i in picks],
        "ITI-78 search": pdq,
    }


def main(argv: list[str] | None = None) -> int:
    bench_mhd.stop_on_signals()  # a SIGTERM/SIGHUP still stops the servers below (finally)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=100_000, help="patients in the MPI (default 100000)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each scenario (default 10)")
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections (default 8)")
    parser.add_argument("--workers", type=int, default=1, help="server worker processes (default 1)")
    parser.add_argument("--client-procs", type=int, default=1, help="load processes (default 1)")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw", help="load client (default raw)")
    args = parser.parse_args(argv)
    if min(args.patients, args.concurrency, args.workers, args.client_procs) < 1 or args.seconds <= 0:
        parser.error("every count and --seconds must be positive")

    work = Path(tempfile.mkdtemp(prefix="epr-bench-pix-"))
    processes = []
    pool = None
    try:
        gateway = bench_mhd.start_gateway(args, work, processes)
        settings = gateway["settings"]
        base = f"https://127.0.0.1:{gateway['port']}"
        print(f"gateway up on {base}; loading {args.patients} patients ...", flush=True)
        loaded_per_s = load_patients(settings, args.patients)
        print(f"loaded {args.patients} patients at {loaded_per_s:.0f} patients/s", flush=True)

        from gateway.auth.dev_issuer import mint_token
        from gateway.first_start import dev_issuer_url

        token = mint_token(role="HCP", gln=bench_mhd.HCP_GLN, name="Dr. Bench Favre", data_dir=settings.data_dir,
                           issuer_url=dev_issuer_url(settings), audience=settings.audience)
        headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
        paths = scenario_paths(args.patients)
        import httpx

        probe = httpx.get(base + paths["ITI-83 all"][0], headers=headers,
                          verify=bench_mhd.client_ssl_context(gateway["ca"]))
        if probe.status_code != 200 or probe.json()["parameter"][0]["valueIdentifier"]["system"] != SPID_SYSTEM:
            raise SystemExit(f"ITI-83 answered {probe.status_code}: {probe.text[:500]}")

        pool = multiprocessing.get_context("spawn").Pool(args.client_procs)
        results = [bench_mhd.scenario(pool, name=name, base_url=base, paths=scenario, order="random", args=args,
                                      headers=headers, ca=gateway["ca"], server_pid=gateway["process"].pid)
                   for name, scenario in paths.items()]
        print()
        print(f"{args.patients} patients; {args.workers} worker(s); {args.concurrency} connections; "
              f"{args.seconds:g} s per scenario; bulk load {loaded_per_s:.0f} patients/s")
        print(f"{'scenario':<15}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'bytes':>9}{'errors':>8}"
              f"{'server cpu':>12}{'ms cpu/req':>12}")
        for r in results:
            print(f"{r['name']:<15}{r['req_per_s']:>9.1f}{r['p50_ms']:>9.2f}{r['p99_ms']:>9.2f}"
                  f"{r['mean_response_bytes']:>9.0f}{r['errors']:>8}{r['server_cpu_cores']:>12.2f}"
                  f"{r['server_cpu_ms_per_req']:>12.3f}")
            for sample in r["error_samples"]:
                print(f"  error: {sample}")
        return 0
    finally:
        if pool is not None:
            pool.terminate()
            pool.join()
        for process in reversed(processes):
            bench_mhd.stop_process(process)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
