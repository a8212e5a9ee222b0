"""MLLP framing read incrementally: recovery from garbage, restarts, cut reads, and bounded holding."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.mllp.framing import (
    ABANDONED,
    END,
    HEAD_BYTES,
    START,
    STRAY_BYTES,
    Discarded,
    Frame,
    FrameParser,
    Refused,
    Skipped,
    frame,
)


def events_of(*chunks: bytes, limit: int = 1024) -> list:
    parser = FrameParser(max_frame_bytes=limit)
    return [event for chunk in chunks for event in parser.feed(chunk)]


def test_frames_back_to_back():
    assert events_of(frame(b"one") + frame(b"two")) == [Frame(b"one"), Frame(b"two")]


def test_stray_bytes_before_and_between_frames_are_skipped_and_reported_once_a_run():
    assert events_of(b"noise\r\n" + frame(b"one") + b"\x1c\r junk", b" more junk " + frame(b"two")) == [
        Skipped(STRAY_BYTES), Frame(b"one"), Skipped(STRAY_BYTES), Frame(b"two")]


def test_blank_bytes_between_frames_are_not_worth_a_report():
    assert events_of(frame(b"one") + b"\n", b"\r\n \x00" + frame(b"two")) == [Frame(b"one"), Frame(b"two")]


def test_a_restarted_frame_counts_from_its_last_start_block():
    assert events_of(START + b"abandoned half" + frame(b"whole")) == [Skipped(ABANDONED), Frame(b"whole")]
    assert events_of(START + b"abandoned", b" half" + START + b"again" + frame(b"whole")) == [
        Skipped(ABANDONED), Frame(b"whole")]  # one read, one report


@pytest.mark.parametrize("cut", [b"", START, START + b"MSH|half", START + b"MSH|" + b"\x1c"])
def test_a_read_cut_mid_frame_yields_nothing_and_says_a_frame_is_open(cut):
    parser = FrameParser(max_frame_bytes=1024)
    assert parser.feed(frame(b"one") + cut) == [Frame(b"one")]
    assert parser.in_frame is (cut != b"")


def test_an_end_block_split_across_two_reads_ends_the_frame():
    assert events_of(START + b"MSH|x\x1c", b"\r" + frame(b"two")) == [Frame(b"MSH|x"), Frame(b"two")]


def test_a_lone_file_separator_is_part_of_the_message():
    assert events_of(START + b"a\x1cb" + END) == [Frame(b"a\x1cb")]


@given(st.lists(st.sampled_from([frame(b"MSH|one"), frame(b"MSH|" + b"x" * 300), b"junk", b"\r\n", START + b"half",
                                 frame(b""), b"\x1c", b"\r"]), max_size=12),
       st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=30))
def test_however_the_bytes_are_cut_into_reads_the_same_frames_come_out(pieces, cuts):
    stream = b"".join(pieces)
    chunks, at = [], 0
    for size in cuts * (len(stream) // sum(cuts) + 1):
        if at >= len(stream):
            break
        chunks.append(stream[at:at + size])
        at += size
    whole = events_of(stream)
    assert [e for e in events_of(*chunks) if not isinstance(e, Skipped)] == [
        e for e in whole if not isinstance(e, Skipped)]
    assert [e for e in events_of(*(bytes([b]) for b in stream)) if not isinstance(e, Skipped)] == [
        e for e in whole if not isinstance(e, Skipped)]


def test_a_frame_over_the_limit_is_discarded_to_its_end_and_reported_with_its_head():
    big = b"MSH|^~\\&|KIS|H|EPR|EPR|2026||ADT^A08|BIG-1|P|2.5\r" + b"y" * 5000
    assert events_of(frame(big) + frame(b"next")) == [
        Refused("MLLP frame over 1024 bytes"), Discarded(big[:HEAD_BYTES], "MLLP frame over 1024 bytes"),
        Frame(b"next")]


def test_a_frame_growing_over_the_limit_is_not_held_while_it_is_read_to_its_end():
    parser = FrameParser(max_frame_bytes=1024)
    head = START + b"MSH|^~\\&|KIS|H|EPR|EPR|2026||ADT^A08|BIG-2|P|2.5\r"
    held = [len(parser.feed(head)), parser.buffered]
    assert parser.feed(b"z" * 10_000) == [Refused("MLLP frame over 1024 bytes")]  # reported once, at once
    for _ in range(1000):  # 10 MB more in 10 KB reads
        assert parser.feed(b"z" * 10_000) == []
        held.append(parser.buffered)
    assert max(held[2:]) <= 1  # once over the limit, at most a byte that may begin the end block
    assert parser.feed(END + frame(b"next")) == [Discarded(head[1:] + b"z" * (HEAD_BYTES - len(head) + 1),
                                                           "MLLP frame over 1024 bytes"), Frame(b"next")]


def test_a_frame_the_door_refuses_is_discarded_to_its_end_with_the_doors_reason():
    parser = FrameParser(max_frame_bytes=1 << 20)
    assert parser.feed(START + b"MSH|first part") == []
    assert parser.buffered == len(b"MSH|first part")
    parser.refuse("too much buffered")
    assert parser.buffered <= 1
    assert parser.feed(b" rest" * 100 + b"\x1c") == []
    assert parser.feed(b"\r") == [Discarded(b"MSH|first part", "too much buffered")]
    assert parser.feed(frame(b"next")) == [Frame(b"next")]


def test_a_refused_frame_abandoned_by_its_sender_is_not_answered():
    parser = FrameParser(max_frame_bytes=1 << 20)
    parser.feed(START + b"MSH|first")
    parser.refuse("too much buffered")
    assert parser.feed(START + b"MSH|second" + END) == [Frame(b"MSH|second")]


def test_frame_wraps_in_start_and_end_blocks():
    assert frame(b"ACK") == START + b"ACK" + END == b"\x0bACK\x1c\r"
