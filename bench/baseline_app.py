"""The benchmark's baseline: a bare FastAPI endpoint that answers every ITI-67-shaped GET with one fixed
searchset Bundle, served by uvicorn exactly as the gateway is served (same TLS context, HTTP protocol,
event loop, worker count, access log). Whatever separates the gateway from this is the gateway's own
work: token verification, query parsing, the store, decryption, the FHIR mapping.

Run by bench/bench_mhd.py:
    python bench/baseline_app.py --port 9443 --workers 1 --body bundle.json --certfile server.pem --keyfile server.key
"""

from __future__ import annotations

import argparse
import os
import ssl
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # the gateway is not necessarily installed: run from a checkout
    sys.path.insert(0, str(ROOT))

BODY_ENV, CERT_ENV, KEY_ENV = "BENCH_BASELINE_BODY", "BENCH_BASELINE_CERT", "BENCH_BASELINE_KEY"


def create():
    """uvicorn factory (module level, so that spawned workers rebuild it from the environment)."""
    import orjson
    from fastapi import FastAPI
    from starlette.responses import Response

    # Parsed once, serialised per request as the gateway's fhir_response does (orjson.dumps of a dict).
    bundle = orjson.loads(Path(os.environ[BODY_ENV]).read_bytes())
    app = FastAPI(title="bench baseline", docs_url=None, redoc_url=None, openapi_url=None)

    @app.get("/fhir/DocumentReference")
    async def search() -> Response:
        return Response(orjson.dumps(bundle), media_type="application/fhir+json")

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
    args = parser.parse_args(argv)
    os.environ[BODY_ENV] = str(args.body.resolve())
    os.environ[CERT_ENV] = str(args.certfile.resolve())
    os.environ[KEY_ENV] = str(args.keyfile.resolve())
    bench_dir = str(Path(__file__).resolve().parent)
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (bench_dir, str(ROOT), os.environ.get("PYTHONPATH")) if p)
    if bench_dir not in sys.path:
        sys.path.insert(0, bench_dir)
    # Mirrors gateway.http.server.run: same protocol class family, loop "auto", access log at info, keep-alive.
    uvicorn.run(
        "baseline_app:create", factory=True, workers=args.workers, host=args.host, port=args.port,
        http=AutoHTTPProtocol, ssl_certfile=str(args.certfile), ssl_keyfile=str(args.keyfile),
        ssl_context_factory=_ssl_factory, log_level="info", server_header=False, proxy_headers=False,
        timeout_keep_alive=30,
    )


if __name__ == "__main__":
    main()
