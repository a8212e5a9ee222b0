"""The benchmarks' baseline: bare FastAPI endpoints served by uvicorn exactly as the gateway is served
(same TLS context, HTTP protocol, event loop, worker count, access log). Whatever separates the gateway
from this is the gateway's own work.

- `GET /fhir/DocumentReference` (and any GET under /fhir) answers one fixed searchset Bundle: the
  ITI-67 / ITI-68 baseline (token verification, query parsing, the store, decryption and the FHIR
  mapping are the gateway's own work).
- `POST /fhir` is the ITI-65 baseline: the work a provide of the same Bundle cannot avoid — parse the
  JSON, decode each Binary (pybase64, as the gateway), its SHA-1, a data key of its own, AES-256-GCM of
  the bytes under it, the data key wrapped (AES-GCM) under a key-encryption key, one INSERT and a commit
  (SQLite in WAL mode with synchronous=FULL, i.e. an fsync; or PostgreSQL) — in the thread pool, as the
  gateway runs its use-cases, answered with a transaction-response naming every entry. What separates
  the gateway's ITI-65 from this: token verification, FHIR validation, the CH MHD rules, the consent
  decision, the metadata sealed and indexed, the idempotency checks, the audit record in the ledger.

Run by bench/bench_mhd.py and bench/bench_scale.py:
    python bench/baseline_app.py --port 9443 --workers 1 --body bundle.json --certfile server.pem \
        --keyfile server.key [--store sqlite:///path/baseline.sqlite3 | postgresql://…]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import ssl
import sys
import threading
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the gateway is not necessarily installed: run from a checkout
    sys.path.insert(0, str(ROOT))

BODY_ENV, CERT_ENV, KEY_ENV, STORE_ENV = ("BENCH_BASELINE_BODY", "BENCH_BASELINE_CERT", "BENCH_BASELINE_KEY",
                                          "BENCH_BASELINE_STORE")
TABLE = "bench_baseline_document"


class BaselineStore:
    """One table, one INSERT and one commit per request. SQLite: one connection behind a lock (SQLite
    has one writer anyway; the gateway's transactions queue on the same lock). PostgreSQL: a connection
    per thread (the gateway's pool)."""

    def __init__(self, url: str):
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self.url = url.replace("postgresql+psycopg://", "postgresql://")  # the gateway's URL works too
        self.kek = AESGCM(AESGCM.generate_key(bit_length=256))
        self._local = threading.local()
        self._lock = threading.Lock()
        if self.url.startswith("sqlite:///"):
            import sqlite3

            self._sqlite = sqlite3.connect(self.url.removeprefix("sqlite:///"), check_same_thread=False,
                                           isolation_level=None)
            self._sqlite.execute("PRAGMA journal_mode=WAL")
            self._sqlite.execute("PRAGMA synchronous=FULL")
            self._sqlite.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, unique_id TEXT, "
                                 "sha1 TEXT, wrapped_key BLOB, sealed BLOB)")
            self._placeholders = "(?, ?, ?, ?, ?)"
        else:
            self._sqlite = None
            self._placeholders = "(%s, %s, %s, %s, %s)"
            with self._pg() as connection:
                connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, unique_id TEXT, "
                                   "sha1 TEXT, wrapped_key BYTEA, sealed BYTEA)")

    def _pg(self):
        connection = getattr(self._local, "connection", None)
        if connection is None:
            import psycopg

            connection = psycopg.connect(self.url)
            self._local.connection = connection
        return connection

    def provide(self, body: bytes) -> bytes:
        import orjson
        import pybase64
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        bundle = orjson.loads(body)
        rows, answers = [], []
        unique_id = next((e["resource"]["masterIdentifier"]["value"] for e in bundle["entry"]
                          if e["resource"]["resourceType"] == "DocumentReference"), None)
        for entry in bundle["entry"]:
            resource = entry["resource"]
            kind, new_id = resource["resourceType"], str(uuid.uuid4())
            answers.append({"response": {"status": "201 Created", "location": f"{kind}/{new_id}"}})
            if kind != "Binary":
                continue
            content = pybase64.b64decode(resource["data"], validate=True)
            digest = hashlib.sha1(content).hexdigest()
            data_key, nonce, wrap_nonce = AESGCM.generate_key(bit_length=256), os.urandom(12), os.urandom(12)
            sealed = nonce + AESGCM(data_key).encrypt(nonce, content, new_id.encode())
            wrapped = wrap_nonce + self.kek.encrypt(wrap_nonce, data_key, b"epr-data-key")
            rows.append((new_id, unique_id, digest, wrapped, sealed))
        sql = f"INSERT INTO {TABLE} VALUES " + ", ".join([self._placeholders] * len(rows))
        values = [v for row in rows for v in row]
        if self._sqlite is not None:
            with self._lock:
                self._sqlite.execute("BEGIN IMMEDIATE")
                self._sqlite.execute(sql, values)
                self._sqlite.execute("COMMIT")
        else:
            connection = self._pg()
            connection.execute(sql, values)
            connection.commit()
        return orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": answers})


def create():
    """uvicorn factory (module level, so that spawned workers rebuild it from the environment)."""
    import orjson
    from fastapi import FastAPI
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import Response

    # Parsed once, serialised per request as the gateway's fhir_response does (orjson.dumps of a dict).
    bundle = orjson.loads(Path(os.environ[BODY_ENV]).read_bytes())
    store = BaselineStore(os.environ[STORE_ENV]) if os.environ.get(STORE_ENV) else None
    app = FastAPI(title="bench baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/fhir/DocumentReference")
    async def search() -> Response:
        return Response(orjson.dumps(bundle), media_type="application/fhir+json")

    async def provide(request) -> Response:
        body = await request.body()
        return Response(await run_in_threadpool(store.provide, body), media_type="application/fhir+json")

    # A plain Starlette route (the annotation would be a string here, which FastAPI reads as a query).
    app.router.add_route("/fhir", provide, methods=["POST"])

    @app.get("/health/ready")
    async def ready() -> Response:
        return Response(b'{"status":"ready"}', media_type="application/fhir+json")

    return app


def _ssl_factory(_config, _default) -> ssl.SSLContext:
    # The gateway's own server context (TLS 1.2+, its cipher choices), without client certificates:
    # the gateway's embedded default does not ask for them either.
    from gateway.pki import server_ssl_context

    return server_ssl_context(Path(os.environ[CERT_ENV]), Path(os.environ[KEY_ENV]), None, False)


def main(argv: list[str] | None = None) -> None:
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--body", type=Path, required=True, help="the searchset Bundle (JSON) to answer with")
    parser.add_argument("--certfile", type=Path, required=True)
    parser.add_argument("--keyfile", type=Path, required=True)
    parser.add_argument("--store", help="where POST /fhir stores: sqlite:///FILE or a postgresql:// URL "
                                        "(without it, POST /fhir is not served)")
    args = parser.parse_args(argv)
    os.environ[BODY_ENV] = str(args.body.resolve())
    os.environ[CERT_ENV] = str(args.certfile.resolve())
    os.environ[KEY_ENV] = str(args.keyfile.resolve())
    if args.store:
        os.environ[STORE_ENV] = args.store
        BaselineStore(args.store)  # the table exists before the workers race to create it
    bench_dir = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (bench_dir, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    # Mirrors gateway.http.server.run: same protocol class family, loop "auto", access log at info, keep-alive,
    # and with several workers the same supervisor (a listening socket per worker: the connections spread
    # over the workers as they do over the gateway's).
    from gateway.http.server import SocketPerWorker, bind_sockets

    config = uvicorn.Config(
        "baseline_app:create", factory=True, workers=args.workers, host=args.host, port=args.port,
        http=AutoHTTPProtocol, ssl_certfile=str(args.certfile), ssl_keyfile=str(args.keyfile),
        ssl_context_factory=_ssl_factory, log_level="info", server_header=False, proxy_headers=False,
        timeout_keep_alive=30,
    )
    sockets = bind_sockets(args.host, args.port, workers=args.workers)
    if args.workers > 1:
        SocketPerWorker(config, sockets).run()
    else:
        uvicorn.Server(config).run(sockets=sockets)


if __name__ == "__main__":
    main()
