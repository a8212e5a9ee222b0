"""Migration benchmark: a generated Infomed export (XDM ZIPs, ≈50 KB documents) migrated end to end,
against a raw baseline doing only the unavoidable work on the same files, in the same run.

    /path/to/python bench/bench_migrate.py                       # the issue's figures: 100,000 docs
                                                                 # embedded, 20,000 into PostgreSQL
    /path/to/python bench/bench_migrate.py --documents 20000 --pg-documents 0

End to end = `MigrationJob.run` as `epr-gateway migrate` runs it: ZIP members read, METADATA.XML
parsed (defusedxml), codes mapped, patient resolved through the MPI, `DocumentExchange.provide_many` (access
decision, provide level, idempotency check, metadata and body sealed with AES-256-GCM, registry rows,
one ATC_DOC_CREATE per document in the hash-chained ledger), journal rows, one commit per batch.
Baseline = per document: read the member, SHA-1, AES-256-GCM; per batch: one multi-row INSERT and a
commit (SQLite WAL with synchronous=FULL, i.e. an fsync; PostgreSQL commit). Both run in a fresh child
process each (peak RSS is the child's own). The export is generated once and reused from --cache-dir
(the patients feed is loaded through ITI-104 before the timed phase and is not counted).
It reports; it asserts nothing. Figures are noisy on a shared machine: run it a few times.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from processes import stop_on_signals  # noqa: E402 - bench/ is this script's folder

GLN = "7601000000002"


def export_dir(cache: Path, documents: int, patients: int, seed: int) -> Path:
    from adapters.infomed.generate.export import generate

    target = cache / f"export-{documents}-{patients}-{seed}"
    if (target / "manifest.json").exists():
        return target
    started = time.perf_counter()
    made = generate(out=target, documents=documents, patients=patients, seed=seed, as_zip=True, quirks=0.0)
    print(f"generated {documents} documents ({made.total_bytes / 1e6:,.0f} MB) in {len(made.media)} ZIPs "
          f"in {time.perf_counter() - started:.1f} s -> {target}", flush=True)
    return target


def media(export: Path) -> list[Path]:
    return sorted(export.glob("media-*.zip"))


def cpu_seconds() -> float:
    """CPU time (user + system) of this process and of its finished children (the reader processes):
    less noisy than wall time on a shared machine."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    """This process's own high-water mark (VmHWM): ru_maxrss would include the parent's at fork."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child phases ---------------------------------------------------------------------------------
def phase_migrate(export: Path, data_dir: Path, database_url: str | None, batch: int, workers: int) -> dict:
    from adapters.infomed.xdm.codes import CodeTables
    from gateway.first_start import prepare
    from gateway.exchanges.imports import ImportExchange
    from gateway.migration.feed import feed_patients
    from gateway.migration.job import MigrationJob, migration_principal
    from gateway.migration.journal import Journal
    from gateway.migration.writers import run_in_writers, writer_processes
    from gateway.migration_cli import writer_parts
    from gateway.settings import Settings
    from gateway.wiring import background_checkpoints, build_runtime

    settings = prepare(Settings(data_dir=data_dir, database_url=database_url, demo_data=False)).settings
    runtime = build_runtime(settings)
    services = runtime.services
    feed_started = time.perf_counter()
    fed = feed_patients(services, export / "patients.ndjson", onboard=True)
    feed_seconds = time.perf_counter() - feed_started
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange),
                       journal=Journal(engine=runtime.engine, keyring=runtime.keyring), tables=CodeTables.load(),
                       principal=migration_principal(GLN), batch=batch, workers=workers)
    writers = writer_processes(dialect=runtime.engine.dialect.name, workers=workers)
    started, cpu = time.perf_counter(), cpu_seconds()
    with background_checkpoints(runtime):  # as `epr-gateway migrate` runs it
        if writers > 1:  # PostgreSQL: `workers` writer processes
            run_in_writers(job, media(export), writers=writers, parts=partial(writer_parts, settings))
        else:
            job.run(media(export))
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "documents": job.counts.documents,
            "writers": writers,
            "bytes": job.counts.bytes, "outcomes": job.counts.outcomes, "feed": fed,
            "feed_seconds": round(feed_seconds, 1), "peak_rss_mb": peak_rss_mb(),
            "peak_rss_readers_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def phase_baseline(export: Path, data_dir: Path, database_url: str | None, batch: int) -> dict:
    import hashlib
    import zipfile

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead = AESGCM(AESGCM.generate_key(256))
    if database_url:
        import psycopg

        connection = psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"))
        connection.execute("DROP TABLE IF EXISTS bench_baseline")
        connection.execute("CREATE TABLE bench_baseline (id TEXT PRIMARY KEY, sha1 TEXT, sealed BYTEA)")
        connection.commit()
        placeholder = "(%s, %s, %s)"
    else:
        import sqlite3

        data_dir.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(data_dir / "baseline.sqlite3")
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute("CREATE TABLE bench_baseline (id TEXT PRIMARY KEY, sha1 TEXT, sealed BLOB)")
        placeholder = "(?, ?, ?)"
    started, cpu = time.perf_counter(), cpu_seconds()
    documents = size = 0
    rows: list = []

    def flush() -> None:
        if rows:
            sql = "INSERT INTO bench_baseline VALUES " + ", ".join([placeholder] * len(rows))
            connection.execute(sql, [v for row in rows for v in row])
            connection.commit()
            rows.clear()

    for path in media(export):
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                if info.filename.endswith("METADATA.XML"):
                    continue
                content = archive.read(info)
                digest = hashlib.sha1(content).hexdigest()
                rows.append((f"{path.name}/{info.filename}", digest, os.urandom(12) + aead.encrypt(
                    os.urandom(12), content, None)))
                documents += 1
                size += len(content)
                if len(rows) >= batch:
                    flush()
    flush()
    seconds = time.perf_counter() - started
    connection.close()
    return {"seconds": seconds, "cpu_seconds": cpu_seconds() - cpu, "documents": documents, "bytes": size,
            "peak_rss_mb": peak_rss_mb()}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    return json.loads(out.stdout.strip().splitlines()[-1])


def reset_postgres(url: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(url)
    with engine.begin() as connection:
        connection.execute(text("DROP SCHEMA public CASCADE"))
        connection.execute(text("CREATE SCHEMA public"))
    engine.dispose()


def scenario(name: str, export: Path, database_url: str | None, batch: int, workers: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix=f"bench-migrate-{name}-"))
    try:
        if database_url:
            reset_postgres(database_url)
        common = ["--export", str(export), "--data-dir", str(work / "migrate"), "--batch", str(batch)]
        url = ["--database-url", database_url] if database_url else []
        migrated = run_child(["--phase", "migrate", *common, *url, "--workers", str(workers)])
        if database_url:
            reset_postgres(database_url)
        baseline = run_child(["--phase", "baseline", *common[:2], "--data-dir", str(work / "baseline"),
                              "--batch", str(batch), *url])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return {"name": name, "migrate": migrated, "baseline": baseline}


def print_table(results: list[dict]) -> None:
    print(f"\n{'scenario':24} {'docs':>8} {'docs/s':>9} {'MB/s':>7} {'peak RSS':>9} {'CPU ms/doc':>11}   ratio to baseline")
    for result in results:
        m, b = result["migrate"], result["baseline"]
        m_rate, b_rate = m["documents"] / m["seconds"], b["documents"] / b["seconds"]
        print(f"{result['name'] + ' migrate':24} {m['documents']:8} {m_rate:9,.0f} {m['bytes'] / m['seconds'] / 1e6:7,.1f} "
              f"{m['peak_rss_mb']:7,.0f}MB {1000 * m.get('cpu_seconds', 0) / m['documents']:11.2f}   {m_rate / b_rate:.2f}")
        print(f"{result['name'] + ' baseline':24} {b['documents']:8} {b_rate:9,.0f} {b['bytes'] / b['seconds'] / 1e6:7,.1f} "
              f"{b['peak_rss_mb']:7,.0f}MB {1000 * b.get('cpu_seconds', 0) / b['documents']:11.2f}")
        print(f"  {m.get('writers', 1)} writer process(es); outcomes {m['outcomes']}; patients fed {m['feed']} in {m['feed_seconds']} s (not timed); "
              f"reader processes' peak RSS {m.get('peak_rss_readers_mb', 0):,.0f} MB each at most")


def main() -> None:
    stop_on_signals()  # a SIGTERM/SIGHUP raises SystemExit: the running phase's child is killed with it
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--documents", type=int, default=100_000, help="into the embedded default (SQLite; 0: skip)")
    parser.add_argument("--pg-documents", type=int, default=20_000, help="into PostgreSQL (0: skip)")
    parser.add_argument("--patients", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2, help="as `migrate --workers`: reader processes beside the "
                        "one writer (SQLite), writer processes (PostgreSQL)")
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "epr-bench-migrate")
    parser.add_argument("--database-url", help="PostgreSQL (dropped and recreated!); default "
                        "EPR_BENCH_DATABASE_URL, else EPR_TEST_DATABASE_URL")
    parser.add_argument("--phase", choices=("migrate", "baseline"), help=argparse.SUPPRESS)
    parser.add_argument("--export", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    # A child phase stores where it is told: no URL means the embedded default (SQLite), whatever the
    # environment says (the embedded scenario must never land in the test services' PostgreSQL).
    if args.phase is None:
        args.database_url = (args.database_url or os.environ.get("EPR_BENCH_DATABASE_URL")
                             or os.environ.get("EPR_TEST_DATABASE_URL"))
    if args.phase == "migrate":
        print(json.dumps(phase_migrate(args.export, args.data_dir, args.database_url, args.batch, args.workers)))
        return
    if args.phase == "baseline":
        print(json.dumps(phase_baseline(args.export, args.data_dir, args.database_url, args.batch)))
        return
    results = [scenario("embedded", export_dir(args.cache_dir, args.documents, args.patients, args.seed), None,
                        args.batch, args.workers)] if args.documents else []
    if args.pg_documents:
        if not args.database_url:
            sys.exit("--pg-documents needs --database-url (or EPR_TEST_DATABASE_URL): a PostgreSQL it may reset")
        pg_export = export_dir(args.cache_dir, args.pg_documents, args.patients, args.seed)
        results.append(scenario("postgresql", pg_export, args.database_url, args.batch, args.workers))
    print_table(results)
    out = ROOT / "bench" / "results"
    out.mkdir(exist_ok=True)
    (out / f"migrate-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
