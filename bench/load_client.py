"""What the benchmarks' load processes run and send: a lean HTTP/1.1 keep-alive client over asyncio TLS,
ITI-65 Bundles that are new at every request, the load loop of bench_mhd's scenarios, and the /proc
readings (CPU of a process tree, of the whole machine) every benchmark reports beside its figures.

Shared by bench_mhd.py, bench_scale.py and compare_trees.py, so that the gateway and its baseline are
always driven by the same client code (the ratios compare servers, not clients).
"""

from __future__ import annotations

import asyncio
import importlib.util
import itertools
import os
import random
import secrets
import ssl
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

WARMUP_S = 1.0
REQUEST_TIMEOUT_S = 30.0
MAX_REQUESTS_PER_CONNECTION = 1_000_000  # a bound on every load loop besides the clock
PDF_TARGET_BYTES = 50 * 1024
DOC_TYPES = ("373942005", "4241000179101", "371531000", "419891008")  # discharge, lab, consultation, record
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


def document_spec(index: int, *, local_id: str) -> dict[str, Any]:
    month = 1 + index % 12
    return {
        "title": f"Report {index}",
        "content": make_pdf(index),
        "type_code": DOC_TYPES[index % len(DOC_TYPES)],
        "local_id": local_id,
        "date": f"2026-{month:02d}-{1 + index % 28:02d}T10:00:00+01:00",
    }


class ProvideBodies:
    """ITI-65 Bundles of one ~50 KB PDF each, every one a new document (its own document and submission
    set uniqueIds), as a hospital sends them: `variants` Bundles are built once, and each request is one
    of them with its two uniqueIds replaced (a bytes replace, ~20 µs: the client's cost stays small).
    `run` tells this load process's documents apart from every other process's and run's."""

    _DOCUMENT = "urn:oid:2.25.1000000000000000000000000000000000000001"
    _SET = "urn:oid:2.25.1000000000000000000000000000000000000002"

    def __init__(self, *, spid: str, local_id: str, variants: int = 8, first_variant: int = 0, run: int | None = None):
        import orjson

        from gateway.samples import provide_bundle

        self.templates = [orjson.dumps(provide_bundle(
            spid=spid, submission_unique_id=self._SET,
            documents=[{**document_spec(first_variant + i, local_id=local_id), "unique_id": self._DOCUMENT}]))
            for i in range(variants)]
        self.run = secrets.randbits(60) if run is None else run
        self._numbers = itertools.count(1)

    def next(self) -> tuple[bytes, str]:
        """(body, the document's uniqueId)."""
        number = next(self._numbers)
        stem = f"urn:oid:2.25.1{self.run % 10**18:018d}{number:012d}"  # an OID arc has no leading zero
        body = self.templates[number % len(self.templates)]
        return body.replace(self._DOCUMENT.encode(), f"{stem}1".encode()).replace(
            self._SET.encode(), f"{stem}2".encode()), f"{stem}1"


# -- /proc ----------------------------------------------------------------------------------------

def tree_cpu_seconds(root_pid: int) -> float:
    """user+system CPU of a process and its descendants (uvicorn workers), from /proc."""
    return sum(tree_cpu_by_pid(root_pid).values())


def tree_cpu_with_reaped(root_pid: int) -> float:
    """As `tree_cpu_seconds`, plus the CPU of the children the root has reaped: a server that forks a
    process per connection (PostgreSQL) would otherwise lose the CPU of every backend that ended."""
    try:
        stat = Path(f"/proc/{root_pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = stat[stat.rindex(")") + 2:].split()
    return tree_cpu_seconds(root_pid) + (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_by_pid(root_pid: int) -> dict[int, float]:
    """user+system CPU of a process and each of its descendants, by pid."""
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
    return {pid: times[pid] for pid in tree if pid in times}


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(v) for v in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def load_average() -> float:
    return float(Path("/proc/loadavg").read_text().split()[0])


def percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


# -- the client -----------------------------------------------------------------------------------

def client_ssl_context(ca_file: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_file)


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client over asyncio TLS streams: the request's bytes as given
    (GET, or POST with its body), then status line, Content-Length or chunked body, Connection: close.
    About a tenth of httpx's CPU per request (see bench/README.md)."""

    def __init__(self, host: str, port: int, ssl_context: ssl.SSLContext):
        self.host, self.port, self.ssl_context = host, port, ssl_context
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def get(self, request: bytes) -> tuple[int, bytes]:
        """`request`: the whole request (line, headers, blank line and any body)."""
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

    request = get

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


def http_request(method: str, path: str, fixed_headers: str, body: bytes = b"") -> bytes:
    """The bytes of one request; `fixed_headers`: "Name: value\\r\\n" lines sent with every request."""
    length = f"Content-Length: {len(body)}\r\n" if method != "GET" else ""
    return f"{method} {path} HTTP/1.1\r\n{fixed_headers}{length}\r\n".encode("latin-1") + body


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


async def _load(spec: dict[str, Any]) -> dict[str, Any]:
    """GETs of spec["paths"] (in turn or at random: spec["order"]), or, with spec["provide"] (the
    `ProvideBodies` arguments), ITI-65 POSTs of a new document each to /fhir."""
    # Wall-clock instants are shared by every load process; convert them to this process's monotonic clock.
    offset = time.monotonic() - time.time()
    begin, start, end = (spec[k] + offset for k in ("t_begin", "t_start", "t_end"))
    paths: list[str] = spec.get("paths") or ["/fhir"]
    bodies = ProvideBodies(**spec["provide"]) if spec.get("provide") else None
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
                if bodies is not None:
                    response = await client.post(path, content=bodies.next()[0],
                                                 headers={"Content-Type": "application/fhir+json"})
                else:
                    response = await client.get(path)
                return response.status_code, response.content

            await asyncio.sleep(max(0.0, begin - time.monotonic()))
            await asyncio.gather(meter(), *(connection(fetch, n) for n in range(connections)))
    else:
        fixed = "".join(f"{k}: {v}\r\n" for k, v in
                        {"Host": url.netloc, "User-Agent": "epr-bench", **spec["headers"]}.items())
        if bodies is not None:
            fixed += "Content-Type: application/fhir+json\r\n"
        requests = {p: http_request("GET", p, fixed) for p in paths}
        pool = [RawConnection(url.hostname, url.port, ssl_context) for _ in range(connections)]

        def fetcher(raw: RawConnection):
            if bodies is not None:
                return lambda path: raw.request(http_request("POST", path, fixed, bodies.next()[0]))
            return lambda path: raw.get(requests[path])

        await asyncio.sleep(max(0.0, begin - time.monotonic()))
        try:
            await asyncio.gather(meter(), *(connection(fetcher(raw), n) for n, raw in enumerate(pool)))
        finally:
            for raw in pool:
                raw.close()
    return {"latencies": latencies, "sizes": sizes, "errors": errors,
            "cpu_s": cpu.get("end", 0.0) - cpu.get("start", 0.0)}
