"""The ceiling for bench_bridge.py: a bare asyncio MLLP server that answers every frame with a fixed
ACK, using the gateway's own framing. Nothing parsed, nothing stored.

    python bench/mllp_echo_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.mllp.framing import frame, read_frame  # noqa: E402

ACK = frame(b"MSH|^~\\&|ECHO|ECHO|||20260101000000||ACK|1|P|2.5\rMSA|AA|1\r")


async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while await read_frame(reader) is not None:
            writer.write(ACK)
            await writer.drain()
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(connection, "127.0.0.1", port, limit=32 * 1024 * 1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
