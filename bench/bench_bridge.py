"""HL7 v2 bridge benchmark: MDM^T02 with ~50 KB PDFs over concurrent MLLP connections to a real
`epr-gateway bridge`, against a bare asyncio MLLP echo server (the ceiling) driven the same way, and
the cost of parsing and mapping alone — all in the same run.

    .venv/bin/python bench/bench_bridge.py [--messages 2000] [--concurrency 8] [--database-url URL]

It prepares a fresh embedded default (development keys, the DEVELOPMENT senders file naming the demo
hospital), loads the demonstration patient (ITI-104, onboarding, the HCP's grant) through the
use-cases, starts the bridge as a subprocess on a free loopback port, sends --messages distinct
documents over --concurrency persistent connections (each waits for its ACK before the next, as MLLP
senders do), then the same load against the echo server. It prints messages/s acknowledged and ACK
latency p50/p99, checks that every ACK is AA, writes bench/results/bridge-<timestamp>.json and stops
every process it started. It reports; it asserts nothing. Target on the 2-core machine: ≥ 500
messages/s acknowledged, p99 < 100 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
for path in (ROOT, BENCH):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from bench_mhd import free_port, make_pdf, tail, tree_cpu_seconds  # noqa: E402
from processes import start_process, stop_on_signals, stop_process  # noqa: E402

READY_TIMEOUT_S = 90.0
START, END = b"\x0b", b"\x1c\x0d"


def mdm_t02(index: int, pdf: bytes, *, local_system_oid: str, local_id: str) -> bytes:
    import base64

    segments = [
        f"MSH|^~\\&|KIS|DEMO-HOSPITAL|EPR|EPR|20261120100000+0100||MDM^T02^MDM_T02|BENCH-{index}|P|2.5|||||CHE|UNICODE UTF-8",
        "EVN|T02|20261120100000+0100",
        f"PID|1||{local_id}^^^Demo&{local_system_oid}&ISO^PI||Demo^Valérie||19700412|F",
        "PV1|1|I",
        f"TXA|1|DS|AP|20261120093000+0100|||||7601000000002^Favre^Luc|||urn:oid:2.25.{10**12 + index}|||||AU||AV"
        f"||||||Lettre de sortie {index}",
        f"OBX|1|ED|DOC^Document||^application^pdf^Base64^{base64.b64encode(pdf).decode()}||||||F",
    ]
    return ("\r".join(segments) + "\r").encode("utf-8")


# -- load -----------------------------------------------------------------------------------------
async def drive(port: int, messages: list[bytes], concurrency: int) -> dict:
    latencies: list[float] = []
    codes: dict[str, int] = {}
    queue = list(reversed(messages))

    async def connection() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=64 * 1024 * 1024)
        try:
            while queue:
                message = queue.pop()
                started = time.perf_counter()
                writer.write(START + message + END)
                await writer.drain()
                ack = await asyncio.wait_for(reader.readuntil(END), 60)
                latencies.append(time.perf_counter() - started)
                code = ack.split(b"MSA|", 1)[1][:2].decode() if b"MSA|" in ack else "??"
                codes[code] = codes.get(code, 0) + 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"messages": len(latencies), "seconds": elapsed, "per_second": len(latencies) / elapsed,
            "p50_ms": 1000 * statistics.median(ordered), "p99_ms": 1000 * ordered[int(0.99 * (len(ordered) - 1))],
            "codes": codes}


def wait_listening(port: int, process, log: Path) -> None:
    import socket

    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}:\n{tail(log)}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"not listening after {READY_TIMEOUT_S:.0f} s:\n{tail(log)}")


def parse_only(messages: list[bytes]) -> dict:
    """Normalise, tokenize and map to the record's model (no storage): one core, in this process."""
    from adapters.infomed.hl7v2.code_tables import CodeTables
    from adapters.infomed.hl7v2.documents import document_message
    from adapters.infomed.hl7v2.message import Message
    from gateway.mllp.senders import SenderRegistry

    registry = SenderRegistry.from_json({"senders": [{"facility": "DEMO-HOSPITAL", "user_id": "b",
                                                      "principal_gln": "7601000000002"}]})
    profile, tables = registry.senders[0].profile, CodeTables()
    started = time.perf_counter()
    for message in messages:
        document_message(Message.parse(message), sender_key="bench", profile=profile, tables=tables)
    elapsed = time.perf_counter() - started
    return {"messages": len(messages), "seconds": elapsed, "per_second": len(messages) / elapsed,
            "ms_per_message": 1000 * elapsed / len(messages)}


def hl7apy_parse(messages: list[bytes], count: int) -> dict:
    """For the record: hl7apy's tolerant parse of the same message (why it is not on the hot path)."""
    from adapters.infomed.hl7v2.message import Message
    from adapters.infomed.hl7v2.structures import parse_with_hl7apy

    texts = [Message.parse(m).text for m in messages[:count]]
    started = time.perf_counter()
    for text in texts:
        parse_with_hl7apy(text, code="MDM", trigger="T02")
    elapsed = time.perf_counter() - started
    return {"messages": count, "ms_per_message": 1000 * elapsed / count}


def prepare_data(data_dir: Path, database_url: str | None) -> dict[str, str]:
    from gateway.demo import DEMO_LOCAL_SYSTEM, load_demo_data
    from gateway.first_start import prepare
    from gateway.settings import Settings
    from gateway.wiring import build_runtime

    env = {"EPR_DATA_DIR": str(data_dir), "EPR_DEMO_DATA": "false"}
    if database_url:
        env["EPR_DATABASE_URL"] = database_url
    settings = prepare(Settings(data_dir=data_dir, database_url=database_url)).settings
    runtime = build_runtime(settings)
    services = runtime.services
    load_demo_data(documents=services.exchange, identities=services.identities, policies=services.policies,
                   base_url="https://127.0.0.1:8443/fhir")
    runtime.close()
    return {**env, "EPR_MLLP_SENDERS": str(settings.mllp_senders), "_local_system": DEMO_LOCAL_SYSTEM}


def main() -> None:
    stop_on_signals()  # a SIGTERM/SIGHUP still stops the bridge and the echo server below (finally)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="default: SQLite in the temporary data directory")
    parser.add_argument("--keep-data", action="store_true")
    parser.add_argument("--map-processes", type=int, default=None,
                        help="EPR_MLLP_MAP_PROCESSES for the bridge (default: the gateway's)")
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="epr-bench-bridge-"))
    if args.database_url and args.database_url.startswith("postgresql"):
        from sqlalchemy import create_engine, text

        engine = create_engine(args.database_url)
        with engine.begin() as connection:  # a fresh schema: the figures are for an empty record
            connection.execute(text("DROP SCHEMA public CASCADE"))
            connection.execute(text("CREATE SCHEMA public"))
        engine.dispose()
    print(f"data directory {data_dir}; preparing {args.messages} messages with ~50 KB PDFs …", flush=True)
    env = prepare_data(data_dir, args.database_url)
    local_system = env.pop("_local_system").removeprefix("urn:oid:")
    pdfs = [make_pdf(i) for i in range(min(args.messages, 200))]
    messages = [mdm_t02(i, pdfs[i % len(pdfs)] + str(i).encode(), local_system_oid=local_system,
                        local_id="DEMO-0001") for i in range(args.messages)]

    parsing = parse_only(messages[: min(500, len(messages))])
    reference = hl7apy_parse(messages, 5)
    bridge_port, echo_port = free_port(), free_port()
    process_env = {**{k: v for k, v in os.environ.items() if not k.startswith("EPR_")}, **env,
                   "EPR_MLLP_PORT": str(bridge_port), "PYTHONPATH": str(ROOT)}
    if args.map_processes is not None:
        process_env["EPR_MLLP_MAP_PROCESSES"] = str(args.map_processes)
    bridge_log, echo_log = data_dir / "bridge.log", data_dir / "echo.log"
    bridge = echo = None
    try:
        bridge = start_process([sys.executable, "-c", "from gateway.cli import app; app()", "bridge"],
                               env=process_env, log=bridge_log, cwd=ROOT)
        wait_listening(bridge_port, bridge, bridge_log)
        asyncio.run(drive(bridge_port, [mdm_t02(10**9 + i, pdfs[i], local_system_oid=local_system,
                                                local_id="DEMO-0001") for i in range(min(50, len(pdfs)))],
                          args.concurrency))  # warm-up (distinct documents, not counted)
        cpu_before = tree_cpu_seconds(bridge.pid)
        gateway = asyncio.run(drive(bridge_port, messages, args.concurrency))
        gateway["server_cpu_seconds"] = tree_cpu_seconds(bridge.pid) - cpu_before
        stop_process(bridge)
        bridge = None
        echo = start_process([sys.executable, str(BENCH / "mllp_echo_server.py"), str(echo_port)],
                             env=process_env, log=echo_log, cwd=ROOT)
        wait_listening(echo_port, echo, echo_log)
        ceiling = asyncio.run(drive(echo_port, messages, args.concurrency))
    finally:
        stop_process(bridge)
        stop_process(echo)

    store = "PostgreSQL" if args.database_url and args.database_url.startswith("postgresql") else "SQLite"
    print(f"\nMDM^T02, ~50 KB PDF each, {args.messages} messages, {args.concurrency} connections, {store}, "
          f"{os.cpu_count()} CPUs\n")
    print(f"{'scenario':<34}{'msg/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'vs echo':>10}")
    for name, figures in (("bridge (stored, AA)", gateway), ("bare asyncio MLLP echo (ceiling)", ceiling)):
        print(f"{name:<34}{figures['per_second']:>10.0f}{figures['p50_ms']:>10.1f}{figures['p99_ms']:>10.1f}"
              f"{figures['per_second'] / ceiling['per_second']:>10.2f}")
    print(f"{'parse + map only (1 core)':<34}{parsing['per_second']:>10.0f}{parsing['ms_per_message']:>10.2f}"
          f"{'ms/msg':>10}")
    print(f"{'hl7apy tolerant parse (reference)':<34}{'':>10}{reference['ms_per_message']:>10.1f}{'ms/msg':>10}")
    print(f"\nACK codes from the bridge: {gateway['codes']}; bridge CPU {gateway['server_cpu_seconds']:.1f} s "
          f"for {gateway['seconds']:.1f} s of load")
    results = BENCH / "results"
    results.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (results / f"bridge-{stamp}.json").write_text(json.dumps({
        "host": platform.node(), "cpus": os.cpu_count(), "store": store, "options": vars(args),
        "bridge": gateway, "echo": ceiling, "parse_only": parsing, "hl7apy": reference}, indent=2))
    if not args.keep_data:
        import shutil

        shutil.rmtree(data_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
