"""The MLLP listener's limits from settings and descriptors, and the door's answer to a frame refused unread."""

import pytest

from gateway.mllp.door import refusal_ack
from gateway.mllp.limits import BufferBudget, MllpLimits, connection_limit
from gateway.settings import Settings


@pytest.mark.parametrize(("configured", "descriptors", "allowed"), [
    (256, 20_000, 256),  # the configured limit when the descriptors allow it
    (256, 256, 128),  # else half of them: the other half stays for HTTPS, the database, files
    (256, 1024, 256), (600, 1024, 512), (10, 1, 1)])
def test_the_connection_limit_leaves_half_the_descriptors_to_the_rest_of_the_process(configured, descriptors,
                                                                                     allowed):
    assert connection_limit(configured, descriptors=descriptors) == allowed


def test_the_limits_come_from_the_settings_with_safe_defaults():
    defaults = MllpLimits.from_settings(Settings())
    assert (defaults.max_frame_bytes, defaults.max_buffered_bytes, defaults.read_timeout_seconds,
            defaults.idle_timeout_seconds) == (32 * 1024 * 1024, 128 * 1024 * 1024, 60.0, 600.0)
    assert 1 <= defaults.max_connections <= 256
    chosen = MllpLimits.from_settings(Settings(mllp_max_frame_bytes=2048, mllp_max_buffered_bytes=4096,
                                               mllp_read_timeout_seconds=5, mllp_idle_timeout_seconds=30,
                                               mllp_max_connections=7))
    assert chosen == MllpLimits(max_frame_bytes=2048, max_buffered_bytes=4096, read_timeout_seconds=5.0,
                                idle_timeout_seconds=30.0, max_connections=7)


def test_a_frame_is_never_allowed_more_than_the_whole_budget():
    """Else it could only ever be answered AR "send it again later" instead of AE."""
    limits = MllpLimits.from_settings(Settings(mllp_max_frame_bytes=8192, mllp_max_buffered_bytes=4096))
    assert (limits.max_frame_bytes, limits.max_buffered_bytes) == (4096, 4096)


@pytest.mark.parametrize("setting", [{"mllp_read_timeout_seconds": 0}, {"mllp_idle_timeout_seconds": -1},
                                     {"mllp_max_connections": 0}, {"mllp_max_frame_bytes": 10},
                                     {"mllp_max_buffered_bytes": 0}])
def test_limits_that_would_turn_a_limit_off_are_refused(setting):
    with pytest.raises(ValueError):
        Settings(**setting)


def test_the_budget_says_what_fits():
    budget = BufferBudget(100)
    budget.change(60)
    assert (budget.fits(40), budget.fits(41)) == (True, False)
    budget.change(-60)
    assert budget.used == 0


def test_a_frame_refused_unread_is_answered_with_its_control_id_when_its_head_has_msh():
    head = b"MSH|^~\\&|KIS|HOPITAL|EPR|EPR|20261120||MDM^T02|BIG-7|P|2.5\rEVN|T02\rPID|1||L-1" + b"x" * 100
    refused = refusal_ack(head, "MLLP frame over 1024 bytes", later=False).decode().split("\r")
    assert refused[1] == "MSA|AE|BIG-7|MLLP frame over 1024 bytes: the gateway does not take it"
    assert refused[0].split("|")[8] == "ACK^T02^ACK"
    busy = refusal_ack(head, "too much held", later=True).decode().split("\r")
    assert busy[1] == "MSA|AR|BIG-7|too much held: send it again later"


@pytest.mark.parametrize("head", [b"", b"not HL7 at all", b"\xff\xfe"])
def test_a_frame_refused_unread_without_a_readable_msh_is_answered_without_a_control_id(head):
    refused = refusal_ack(head, "MLLP frame over 1024 bytes", later=False).decode().split("\r")
    assert refused[1] == "MSA|AE||MLLP frame over 1024 bytes: the gateway does not take it"
