"""What signing the ledger's head at every commit batch costs (item 14 of the hardening issue).

Appends batches of audit records through `DatabaseAuditLedger.append_many`, one transaction per
batch, as the group commit does, and compares in the same run with a bare baseline: the same ledger
whose head is not signed (a subclass for this benchmark only; the gateway has no such switch).
Prints the figures and their ratio; asserts nothing. Runs on SQLite in a temporary directory (put it
on tmpfs with --dir /dev/shm to leave the disk's fsync out of the figure, which is then the CPU cost
alone) or on PostgreSQL with --database-url.

    python bench/bench_ledger_head.py --batches 2000 --batch-size 1
    python bench/bench_ledger_head.py --batch-size 8 --dir /dev/shm
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey  # noqa: E402

from adapters.cara.store.database import make_engine, migrate  # noqa: E402
from audit.events import AuditRecord, DocumentRef  # noqa: E402
from audit.ledger import DatabaseAuditLedger, prepare  # noqa: E402
from audit.signing import key_id_of  # noqa: E402
from consent.principal import Principal  # noqa: E402

HCP = Principal(role="HCP", user_id="7601000234438", user_id_qualifier="urn:gs1:gln", name="Dr. Bench")


class UnsignedHeadLedger(DatabaseAuditLedger):
    """The baseline: everything the ledger does but the per-batch head signature."""

    def _sign_head(self, connection, seq, record_hash) -> None:
        return None


def run(ledger, engine, batches: int, size: int) -> list[float]:
    records = [prepare(AuditRecord(transaction="ITI-68", principal=HCP, source_site="2.16.756.5.30.1.999.1.1",
                                   atc_code="ATC_DOC_READ", patient_spid="761337610411353650",
                                   documents=(DocumentRef(unique_id=f"urn:oid:1.2.3.{n}"),)), "k")
               for n in range(size)]
    timings = []
    for _ in range(batches):
        started = time.perf_counter()
        with engine.begin() as connection:
            ledger.append_many(connection, records)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batches", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=1, help="records per commit batch (default 1)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of each (default 3)")
    parser.add_argument("--dir", default=None, help="where the SQLite file goes (default: a temporary directory)")
    parser.add_argument("--database-url", default=None, help="PostgreSQL URL instead (its schema is reset!)")
    args = parser.parse_args()
    key = Ed25519PrivateKey.generate()
    results: dict[str, list[float]] = {"signed head": [], "baseline": []}
    with tempfile.TemporaryDirectory(dir=args.dir) as work:
        for round_ in range(args.rounds):
            pair = [("signed head", DatabaseAuditLedger), ("baseline", UnsignedHeadLedger)]
            for name, kind in pair if round_ % 2 == 0 else pair[::-1]:  # alternate who goes first
                engine = make_engine(args.database_url or f"sqlite:///{work}/ledger-{name[0]}{round_}.sqlite3")
                if args.database_url:
                    with engine.begin() as connection:
                        connection.exec_driver_sql("DROP SCHEMA public CASCADE; CREATE SCHEMA public")
                migrate(engine)
                ledger = kind(engine=engine, signing_key=key, key_id=key_id_of(key.public_key()))
                run(ledger, engine, 50, args.batch_size)  # warm-up
                results[name] += run(ledger, engine, args.batches, args.batch_size)
                engine.dispose()
    print(f"{args.batches} batches x {args.rounds} rounds, {args.batch_size} record(s) per batch, "
          f"{'PostgreSQL' if args.database_url else 'SQLite in ' + (args.dir or 'a temporary directory')}")
    print(f"{'':14} {'batches/s':>10} {'mean ms':>8} {'p50 ms':>7} {'p99 ms':>7}")
    for name, timings in results.items():
        ordered = sorted(timings)
        print(f"{name:14} {len(timings) / sum(timings):10.0f} {statistics.mean(timings) * 1000:8.3f} "
              f"{ordered[len(ordered) // 2] * 1000:7.3f} {ordered[int(len(ordered) * 0.99)] * 1000:7.3f}")
    signed, bare = (statistics.mean(results[n]) for n in ("signed head", "baseline"))
    print(f"signed head / baseline (time per batch): {signed / bare:.3f}   cost per batch: "
          f"{(signed - bare) * 1e6:.0f} µs")


if __name__ == "__main__":
    main()
