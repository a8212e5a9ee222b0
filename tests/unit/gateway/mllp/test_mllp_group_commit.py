"""The group commit: what arrives together commits together, in order; failures reach every waiter."""

import threading
import time

import pytest

from gateway.mllp.group_commit import GroupCommit


def test_items_submitted_together_share_one_commit_and_get_their_own_answers():
    batches = []
    gate = threading.Event()

    def commit(items):
        gate.wait(5)
        batches.append(list(items))
        return [f"ack-{i}" for i in items]

    group = GroupCommit(commit, max_wait=0.05, senders=lambda: 4)
    first = group.submit(0)  # its batch waits for the other senders (up to max_wait)
    futures = [first] + [group.submit(i) for i in (1, 2, 3)]
    gate.set()
    assert [f.result(5) for f in futures] == ["ack-0", "ack-1", "ack-2", "ack-3"]
    group.stop()
    assert batches == [[0, 1, 2, 3]]


def test_a_lone_sender_is_not_kept_waiting():
    group = GroupCommit(lambda items: [b"ok"] * len(items), max_wait=5, senders=lambda: 1)
    started = time.monotonic()
    assert group.submit("x").result(5) == b"ok"
    assert time.monotonic() - started < 1
    group.stop()


def test_a_batch_waits_at_most_max_wait_for_senders_that_send_nothing():
    group = GroupCommit(lambda items: [b"ok"] * len(items), max_wait=0.05, senders=lambda: 8)
    started = time.monotonic()
    assert group.submit("x").result(5) == b"ok"
    assert 0.04 <= time.monotonic() - started < 2
    group.stop()


def test_a_failed_commit_fails_every_item_of_its_batch():
    def commit(items):
        raise RuntimeError("store down")

    group = GroupCommit(commit, max_wait=0.05, senders=lambda: 2)
    futures = [group.submit(1), group.submit(2)]
    for future in futures:
        with pytest.raises(RuntimeError):
            future.result(5)
    group.stop()
