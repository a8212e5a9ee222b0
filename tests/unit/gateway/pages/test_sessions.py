"""Portal sessions: the same rules on each store (in-process, real Redis): timeouts, sign-in under a
new id, sign-out, and nothing usable kept under the browser's id."""

import os

import pytest
import redis

from gateway.pages.sessions import InProcessSessions, RedisSessions, Sessions
from gateway.portal.pages import PortalSession

KINDS = ["in-process", pytest.param("redis", marks=pytest.mark.postgres)]


class Clock:
    def __init__(self):
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def make_sessions(kind: str, clock: Clock, idle: int = 60, absolute: int = 300) -> Sessions:
    if kind == "in-process":
        store = InProcessSessions(absolute_seconds=absolute)
    else:
        url = os.environ.get("EPR_TEST_REDIS_URL")
        if not url:
            pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
        client = redis.Redis.from_url(url)
        client.flushdb()
        store = RedisSessions(client=client, absolute_seconds=absolute, kind=PortalSession)
    return Sessions(store=store, idle_seconds=idle, absolute_seconds=absolute, clock=clock, kind=PortalSession)


@pytest.mark.parametrize("kind", KINDS)
def test_a_session_lives_while_used_and_ends_after_the_idle_timeout(kind):
    clock = Clock()
    sessions = make_sessions(kind, clock)
    session_id, started = sessions.start()

    clock.now += 59
    assert sessions.current(session_id).csrf == started.csrf
    clock.now += 61
    assert sessions.current(session_id) is None
    clock.now -= 100  # gone for good: a timed-out session is deleted, not just hidden
    assert sessions.current(session_id) is None


@pytest.mark.parametrize("kind", KINDS)
def test_the_absolute_timeout_ends_a_session_in_constant_use(kind):
    clock = Clock()
    sessions = make_sessions(kind, clock)
    session_id, _ = sessions.start()
    for _ in range(5):
        clock.now += 59
        assert sessions.current(session_id) is not None

    clock.now += 59  # 354 s after the start: past the 300 s absolute timeout
    assert sessions.current(session_id) is None


@pytest.mark.parametrize("kind", KINDS)
def test_sign_in_replaces_the_session_id_and_keeps_only_the_language(kind):
    clock = Clock()
    sessions = make_sessions(kind, clock)
    before_id, before = sessions.start(lang="de")

    after_id, after = sessions.sign_in(before_id, role="PAT", user_id="761337610430891416",
                                       patient_spid="761337610430891416", name="Valérie Demo")

    assert after_id != before_id and after.csrf != before.csrf
    assert sessions.current(before_id) is None
    assert (after.role, after.patient_spid, after.lang, after.signed_in) == ("PAT", "761337610430891416", "de", True)


@pytest.mark.parametrize("kind", KINDS)
def test_sign_out_deletes_the_session(kind):
    sessions = make_sessions(kind, Clock())
    session_id, _ = sessions.start(role="PAT", user_id="x", patient_spid="761337610430891416")
    sessions.end(session_id)
    assert sessions.current(session_id) is None
    assert sessions.current("") is None and sessions.current(None) is None


@pytest.mark.postgres
def test_redis_holds_sessions_under_a_hash_of_the_id_only():
    url = os.environ.get("EPR_TEST_REDIS_URL")
    if not url:
        pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
    client = redis.Redis.from_url(url)
    client.flushdb()
    sessions = Sessions(store=RedisSessions(client=client, absolute_seconds=300, kind=PortalSession), idle_seconds=60,
                        absolute_seconds=300, kind=PortalSession)
    session_id, _ = sessions.start()

    keys = [k.decode() for k in client.keys("*")]
    assert len(keys) == 1 and session_id not in keys[0] and keys[0].startswith("epr:portal:session:")
    assert 0 < client.ttl(keys[0]) <= 300
