"""A syslog connection numbered 1024 or more is watched like any other.

`confirm_taken` and the idle check asked select() whether the receiver had written; select() raises
ValueError for a descriptor numbered 1024 or more. A gateway holding many connections gets such numbers,
and so did the whole test suite in one process: the ATNA and SIEM sends failed with "filedescriptor out
of range in select()". They now ask poll(), which has no such limit."""

from __future__ import annotations

import os
import resource
import socket

import pytest

from adapters.syslog import confirm_taken, readable_within

PAST_SELECT = 1100


@pytest.fixture
def descriptors_past_select():
    """The process's next descriptors numbered past select()'s limit (its soft limit raised if needed)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < PAST_SELECT + 64:
        pytest.skip(f"the hard limit of open files ({hard}) is below {PAST_SELECT + 64}")
    if soft != resource.RLIM_INFINITY and soft < PAST_SELECT + 64:
        resource.setrlimit(resource.RLIMIT_NOFILE, (PAST_SELECT + 64, hard))
    fillers = []
    try:
        while not fillers or fillers[-1] < PAST_SELECT:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        yield
    finally:
        for descriptor in fillers:
            os.close(descriptor)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_connection_numbered_past_1024_is_watched_for_what_the_receiver_writes(descriptors_past_select):
    ours, receiver = socket.socketpair()
    try:
        assert ours.fileno() >= 1024
        assert readable_within(ours, 0.01) is False
        confirm_taken(ours, wait_seconds=0.05, timeout_seconds=5)  # the receiver wrote nothing: taken
        receiver.close()  # what a refusal looks like from here: a close (or a TLS alert)
        with pytest.raises(ConnectionError, match="closed the connection"):
            confirm_taken(ours, wait_seconds=1.0, timeout_seconds=5)
    finally:
        ours.close()
        receiver.close()
