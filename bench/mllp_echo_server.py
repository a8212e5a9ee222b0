"""The ceiling for bench_bridge.py: a bare asyncio MLLP server that answers every frame with a fixed
ACK, using the gateway's own framing. Nothing parsed, nothing stored.

    python bench/mllp_echo_server.py PORT
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.mllp.framing import Frame, FrameParser, frame  # noqa: E402

ACK = frame(b"MSH|^~\\&|ECHO|ECHO|||20260101000000||ACK|1|P|2.5\rMSA|AA|1\r")


class Echo(asyncio.Protocol):
    def connection_made(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.parser = FrameParser(max_frame_bytes=32 * 1024 * 1024)

    def data_received(self, data: bytes) -> None:
        for event in self.parser.feed(data):
            if isinstance(event, Frame):
                self.transport.write(ACK)


async def main(port: int) -> None:
    server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
