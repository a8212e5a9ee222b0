"""ITI-67 search (ITI-68 read, ITI-65 provide) CPU of two source trees side by side: the same load at the same time.

    git worktree add --detach /tmp/reference <commit>
    .venv/bin/python bench/compare_trees.py /tmp/reference . [--scenario search|read|provide] [--rounds 4]

Why: "does this change make ITI-67 dearer?" cannot be answered by two runs of bench_mhd.py one after the
other on a machine others share: what else runs moves the figures more than the change does (the same
tree measured 0.77 and 1.01 ms of CPU per search in two runs). Here each tree's gateway is started as
bench_mhd.py starts it (its own `serve`, fresh data, one patient, --docs documents, the HCP's grant),
both at once, and one load process drives both with the same searches over keep-alive TLS connections
(--concurrency each) for the same --seconds: whatever else the machine does falls on both alike. Each
round prints both servers' CPU per search (user + system, the whole process tree) and their ratio
(second / first); the last line the mean ratio. It asserts nothing.

Each tree is imported from its own directory (its bench_mhd.py starts its own gateway), so the
reference needs only to be a checkout; both run with this interpreter's packages.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from urllib.parse import urlsplit

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import bench_mhd  # noqa: E402 - this tree's client and /proc helpers drive both servers
from processes import ProcessGroup, stop_on_signals  # noqa: E402

SERVER = """
import argparse, asyncio, json, signal, sys, tempfile
from pathlib import Path
tree, out, docs = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
sys.path[:0] = [str(tree / "bench"), str(tree)]
import bench_mhd as b  # the compared tree's own (an older tree has no bench/processes.py)
def leave(signum, frame):  # SIGTERM from compare_trees raises SystemExit, so `finally` stops the gateway
    raise SystemExit(128 + signum)
for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(signum, leave)
processes = []
try:
    gateway = b.start_gateway(argparse.Namespace(workers=1, no_search_cache=False),
                              Path(tempfile.mkdtemp(prefix="compare-trees-")), processes)
    settings = gateway["settings"]
    from gateway.auth.dev_issuer import mint_token
    from gateway.first_start import dev_issuer_url
    issuer = dict(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience)
    tokens = {"HCP": mint_token(role="HCP", gln=b.HCP_GLN, name="Dr. Bench Favre", **issuer),
              "PAT": mint_token(role="PAT", spid=b.SPID, name="Anna Muster", **issuer),
              "PADM": mint_token(role="PADM", user_id="bench-policy-admin", name="Bench admin", **issuer)}
    base = f"https://127.0.0.1:{gateway['port']}"
    provided = asyncio.run(b.register_and_provide(base, gateway["ca"], tokens, b.provide_bodies(docs, 1), 4))
    out.write_text(json.dumps({"base": base, "ca": gateway["ca"], "token": tokens["HCP"],
                               "pid": gateway["process"].pid, "search": b.search_paths(),
                               "read": [f"/fhir/Binary/{i}" for i in provided["ids"]]}))
    signal.pause()
finally:
    for process in processes:
        b.stop_process(process)
"""


def start(group: ProcessGroup, tree: Path, docs: int, out: Path) -> tuple[subprocess.Popen, Path]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    process = subprocess.Popen([sys.executable, "-c", SERVER, str(tree), str(out), str(docs)], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    return group.adopt(process), out


def wait_for(process: subprocess.Popen, out: Path, timeout: float = 240.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_size:
            return json.loads(out.read_text())
        if process.poll() is not None:
            raise SystemExit(f"a gateway did not start:\n{process.stderr.read().decode()[-2000:]}")
        time.sleep(0.5)
    raise SystemExit("a gateway did not start in time")


# ITI-68 asks for the document itself (application/fhir+json would answer a FHIR Binary), as bench_mhd does.
ACCEPT = {"search": "application/fhir+json", "read": "application/pdf, */*"}


async def drive(server: dict, stop_at: float, connections: int, scenario: str) -> int:
    url = urlsplit(server["base"])
    context = ssl.create_default_context(cafile=server["ca"])
    headers = (f"Host: {url.netloc}\r\nUser-Agent: epr-bench\r\nAuthorization: Bearer {server['token']}\r\n"
               f"Accept: {ACCEPT[scenario]}\r\n")
    requests = [f"GET {path} HTTP/1.1\r\n{headers}\r\n".encode() for path in server[scenario]]
    answered = 0

    async def connection(number: int) -> None:
        nonlocal answered
        raw = bench_mhd.RawConnection(url.hostname, url.port, context)
        index = number
        try:
            while time.monotonic() < stop_at:
                status, body = await raw.get(requests[index % len(requests)])
                if status != 200:
                    raise SystemExit(f"a {scenario} answered {status}: {body[:300]!r}")
                index += 1
                answered += 1
        finally:
            raw.close()

    await asyncio.gather(*(connection(n) for n in range(connections)))
    return answered


async def provide(server: dict, bodies: list[bytes], connections: int) -> int:
    """ITI-65: post `bodies` (one document each) over `connections`; the documents stored."""
    import httpx

    headers = {"Authorization": f"Bearer {server['token']}", "Content-Type": "application/fhir+json"}
    queue = list(bodies)
    stored = 0
    async with httpx.AsyncClient(base_url=server["base"], verify=ssl.create_default_context(cafile=server["ca"]),
                                 headers=headers, timeout=120.0) as client:
        async def sender() -> None:
            nonlocal stored
            while queue:
                answer = await client.post("/fhir", content=queue.pop())
                if answer.status_code != 200:
                    raise SystemExit(f"a provide answered {answer.status_code}: {answer.text[:300]}")
                stored += 1

        await asyncio.gather(*(sender() for _ in range(connections)))
    return stored


def provide_round(servers: list[dict], documents: int, connections: int, first_index: int) -> list[float]:
    """CPU ms per provided document of each server, both fed the same new documents at the same time."""
    import orjson

    from gateway.samples import provide_bundle

    bodies = [orjson.dumps(provide_bundle(spid=bench_mhd.SPID, documents=[bench_mhd.document_spec(i)]))
              for i in range(first_index, first_index + documents)]
    before = [bench_mhd.tree_cpu_seconds(s["pid"]) for s in servers]

    async def both() -> list[int]:
        return await asyncio.gather(*(provide(s, bodies, connections) for s in servers))

    counts = asyncio.run(both())
    after = [bench_mhd.tree_cpu_seconds(s["pid"]) for s in servers]
    return [1000 * (a - b) / n for a, b, n in zip(after, before, counts, strict=True)]


async def round_of(servers: list[dict], seconds: float, connections: int, scenario: str) -> list[float]:
    """CPU ms per request of each server over one window of the same load on both."""
    warm = time.monotonic() + 1.0
    await asyncio.gather(*(drive(s, warm, connections, scenario) for s in servers))
    before = [bench_mhd.tree_cpu_seconds(s["pid"]) for s in servers]
    stop_at = time.monotonic() + seconds
    counts = await asyncio.gather(*(drive(s, stop_at, connections, scenario) for s in servers))
    after = [bench_mhd.tree_cpu_seconds(s["pid"]) for s in servers]
    return [1000 * (a - b) / n for a, b, n in zip(after, before, counts, strict=True)]


def main(argv: list[str] | None = None) -> int:
    stop_on_signals()  # SIGTERM/SIGHUP/Ctrl-C leave through the ProcessGroup below, which stops both servers
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="the reference tree (a checkout of the commit compared with)")
    parser.add_argument("second", type=Path, help="the tree measured against it")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=8, help="keep-alive connections to each server")
    parser.add_argument("--docs", type=int, default=60)
    parser.add_argument("--scenario", choices=("search", "read", "provide"), default="search",
                        help="ITI-67 searches (default), ITI-68 reads of the provided documents, or ITI-65 "
                             "provides of --provide-docs new ~50 KB documents a round")
    parser.add_argument("--provide-docs", type=int, default=100)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="compare-trees-"))
    # Each server script stops its own gateway when it is sent SIGTERM (it may take a while: the
    # group's grace below); this script's own SIGTERM, SIGHUP or Ctrl-C stop both of them.
    with ProcessGroup(grace_seconds=60) as group:
        started = [start(group, tree.resolve(), args.docs, work / f"server-{n}.json")
                   for n, tree in enumerate((args.first, args.second))]
        servers = [wait_for(process, out) for process, out in started]
        ratios = []
        for number in range(1, args.rounds + 1):
            if args.scenario == "provide":
                first, second = provide_round(servers, args.provide_docs, min(args.concurrency, 4),
                                              first_index=100_000 * number)
            else:
                first, second = asyncio.run(round_of(servers, args.seconds, args.concurrency, args.scenario))
            ratios.append(second / first)
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"round {number}: {args.first} {first:.3f} ms CPU per {args.scenario}, {args.second} {second:.3f}, "
                  f"ratio {ratios[-1]:.3f} (load {load})", flush=True)
        print(f"mean ratio {mean(ratios):.3f} over {len(ratios)} rounds ({args.scenario})")
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
