"""MLLP framing on a real asyncio StreamReader: recovery from garbage, restarts, cut connections."""

import asyncio

import pytest

from gateway.mllp.framing import END, START, FrameTooLarge, frame, read_frame


def frames_of(data: bytes, *, limit: int = 1024, eof: bool = True) -> list:
    async def run():
        reader = asyncio.StreamReader(limit=limit)
        reader.feed_data(data)
        if eof:
            reader.feed_eof()
        found = []
        while (message := await read_frame(reader)) is not None:
            found.append(message)
        return found
    return asyncio.run(run())


def test_frames_back_to_back():
    assert frames_of(frame(b"one") + frame(b"two")) == [b"one", b"two"]


def test_garbage_before_and_between_frames_is_skipped():
    assert frames_of(b"noise\r\n" + frame(b"one") + b"\x1c\r junk " + frame(b"two")) == [b"one", b"two"]


def test_garbage_longer_than_the_limit_is_skipped_too():
    assert frames_of(b"x" * 5000 + frame(b"one"), limit=1024) == [b"one"]


def test_a_restarted_frame_counts_from_its_last_start_block():
    assert frames_of(START + b"abandoned half" + frame(b"whole")) == [b"whole"]


@pytest.mark.parametrize("cut", [b"", START, START + b"MSH|half", START + b"MSH|" + b"\x1c"])
def test_a_connection_closed_mid_frame_yields_nothing(cut):
    assert frames_of(frame(b"one") + cut) == [b"one"]


def test_a_frame_over_the_limit_is_refused():
    with pytest.raises(FrameTooLarge):
        frames_of(frame(b"y" * 5000), limit=1024)


def test_frame_wraps_in_start_and_end_blocks():
    assert frame(b"ACK") == START + b"ACK" + END == b"\x0bACK\x1c\r"
