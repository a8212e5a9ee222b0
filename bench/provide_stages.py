"""Where one ITI-65 provide's CPU goes, stage by stage, in process (no HTTP, no TLS, one thread).

    .venv/bin/python bench/provide_stages.py [--documents 1000]

A gateway runtime on a fresh embedded data directory (SQLite), one patient with the HCP's grant, then
one-document Bundles (~50 KB PDF, as `bench_mhd.py` sends them) given one after the other to the use-case
that `POST [base]` runs (`TransactionExchange.submit`). Each stage below is wrapped for the run and
charged the thread CPU (`time.thread_time_ns`) spent inside it, so the figures are CPU, not waiting: the
commit's fsync counts only what the kernel spends on it. Stages nest (the indented ones are inside the
one above them); "the rest" is what no wrapped stage covers. Sequential provides do not share a commit:
under concurrent load the group commit spreads one commit over several provides
(`gateway/exchanges/grouped_provides.py`).

It measures; it asserts nothing. The first 50 provides warm the process and are not counted.
"""

from __future__ import annotations

import argparse
import collections
import functools
import importlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]

import bench_mhd  # noqa: E402 - the same Bundles, patient and grant as the HTTP benchmark
import orjson  # noqa: E402

WARM_UP = 50
BASE_URL = "https://127.0.0.1:9/fhir"

# (label, depth, module, owner inside the module or None, attribute): each wrapped for the run.
STAGES = (
    ("TransactionExchange.submit (all of it)", 0, "gateway.exchanges.transaction", "TransactionExchange", "submit"),
    ("client JSON: duplicates, depth, budget", 1, "adapters.cara.fhir_mapping", None, "load_client_json"),
    ("R4B model validation (fhir.resources)", 1, "adapters.cara.fhir_mapping", None, "get_fhir_model_class"),
    ("provide_bundle", 1, "gateway.exchanges.documents", "DocumentExchange", "provide_bundle"),
    ("submission_from_bundle (CH MHD rules, mapping)", 2, "adapters.cara.fhir_mapping", None,
     "submission_from_bundle"),
    ("authorise_many (decision, sealing, audit records)", 2, "gateway.exchanges.batch_provide",
     "DocumentProvider", "authorise_many"),
    ("seal_body", 3, "adapters.cara.store.documents", "DatabaseDocumentStore", "seal_body"),
    ("seal_metadata", 3, "adapters.cara.store.documents", "DatabaseDocumentStore", "seal_metadata"),
    ("Auditor.prepare_many", 3, "gateway.exchanges.auditing", "Auditor", "prepare_many"),
    ("store (one transaction)", 2, "gateway.exchanges.grouped_provides", "GroupedProvides", "store"),
    ("load (what the store holds)", 3, "adapters.cara.store.document_batches", "_BatchProvide", "load"),
    ("decide", 3, "adapters.cara.store.document_batches", "_BatchProvide", "decide"),
    ("write (rows)", 3, "adapters.cara.store.document_batches", "_BatchProvide", "write"),
    ("audit records into the ledger", 3, "gateway.exchanges.auditing", "Auditor", "write_prepared"),
    ("commit (with its fsync)", 3, "sqlalchemy.engine.base", "Connection", "_commit_impl"),
    ("transaction_response", 2, "adapters.cara.fhir_mapping", None, "transaction_response"),
)


class StageClock:
    """Thread CPU charged to each wrapped callable while the run lasts."""

    def __init__(self) -> None:
        self.nanoseconds: collections.Counter = collections.Counter()
        self.calls: collections.Counter = collections.Counter()

    def wrap(self, label: str, owner, attribute: str) -> None:
        original = getattr(owner, attribute)
        clock = self

        @functools.wraps(original)
        def timed(*args, **kwargs):
            started = time.thread_time_ns()
            try:
                return original(*args, **kwargs)
            finally:
                clock.nanoseconds[label] += time.thread_time_ns() - started
                clock.calls[label] += 1

        setattr(owner, attribute, timed)

    def wrap_model_validation(self, label: str, module) -> None:
        """`get_fhir_model_class(...)` returns the class whose `model_validate` is timed."""
        find = module.get_fhir_model_class
        clock = self

        class Timed:
            def __init__(self, model):
                self._model = model

            def model_validate(self, data):
                started = time.thread_time_ns()
                try:
                    return self._model.model_validate(data)
                finally:
                    clock.nanoseconds[label] += time.thread_time_ns() - started
                    clock.calls[label] += 1

        module.get_fhir_model_class = lambda name: Timed(find(name))

    def reset(self) -> None:
        self.nanoseconds.clear()
        self.calls.clear()


def build(work: Path):
    """A runtime on a fresh data directory, its patient registered and the HCP granted access."""
    for name in [n for n in os.environ if n.startswith("EPR_")]:
        del os.environ[name]  # an operator's settings must not leak in
    os.environ.update({"EPR_DATA_DIR": str(work / "data"), "EPR_AUDIENCE": BASE_URL, "EPR_DEMO_DATA": "false"})
    from starlette.testclient import TestClient

    from gateway.composition import create_app
    from gateway.first_start import prepare
    from gateway.samples import patient_feed
    from gateway.settings import Settings
    from gateway.wiring import build_runtime

    settings = prepare(Settings()).settings
    runtime = build_runtime(settings)
    tokens = bench_mhd.bench_tokens(settings)

    def headers(role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {tokens[role]}", "Content-Type": "application/fhir+json"}

    client = TestClient(create_app(runtime), base_url="https://127.0.0.1:9")
    client.__enter__()  # the app's lifespan (ledger, group commits) runs for the whole measurement
    feed = patient_feed(spid=bench_mhd.SPID, local_system=bench_mhd.LOCAL_SYSTEM, local_id=bench_mhd.LOCAL_ID,
                        family="Muster", given="Anna", birth_date="1980-05-17", gender="female")
    answer = client.put(f"/fhir/Patient?identifier={bench_mhd.LOCAL_SYSTEM}|{bench_mhd.LOCAL_ID}",
                        content=orjson.dumps(feed), headers=headers("HCP"))
    assert answer.status_code in (200, 201), answer.text
    onboarding, grant = bench_mhd.consent_bodies()
    for body, role in [*((b, "PADM") for b in onboarding), (grant, "PAT")]:
        answer = client.post("/fhir/Consent", content=body, headers=headers(role))
        assert answer.status_code == 201, answer.text
    return client, runtime, runtime.verifier.verify(tokens["HCP"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--documents", type=int, default=1000, help="provides measured (after 50 to warm up)")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="bench-provide-stages-"))
    bodies = [body for _, body in bench_mhd.provide_bodies(args.documents + WARM_UP, 1)]
    client, runtime, principal = build(work)
    try:
        clock = StageClock()
        for label, _, module_name, owner_name, attribute in STAGES:
            module = importlib.import_module(module_name)
            if attribute == "get_fhir_model_class":
                clock.wrap_model_validation(label, module)
            else:
                clock.wrap(label, getattr(module, owner_name) if owner_name else module, attribute)
        submit = runtime.services.transactions.submit
        for body in bodies[:WARM_UP]:
            submit(principal=principal, body=body, base_url=BASE_URL)
        clock.reset()
        started = time.thread_time_ns()
        for body in bodies[WARM_UP:]:
            submit(principal=principal, body=body, base_url=BASE_URL)
        total = (time.thread_time_ns() - started) / args.documents / 1e6
    finally:
        client.__exit__(None, None, None)
        shutil.rmtree(work, ignore_errors=True)
    print(f"{args.documents} one-document provides in process, one after the other: "
          f"{total:.3f} ms of thread CPU each\n")
    print(f"{'stage':58} {'ms/provide':>10} {'share':>6}")
    for label, depth, *_ in STAGES:
        ms = clock.nanoseconds[label] / args.documents / 1e6
        print(f"{'  ' * depth + label:58} {ms:10.3f} {100 * ms / total:5.1f}%")
    covered = sum(clock.nanoseconds[label] for label, depth, *_ in STAGES if depth == 0) / args.documents / 1e6
    print(f"{'the rest (outside submit)':58} {total - covered:10.3f} {100 * (total - covered) / total:5.1f}%")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
