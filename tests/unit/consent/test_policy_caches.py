"""One conformance test for every PolicyCache implementation (in-process, Redis, none)."""

import os

import pytest
import redis

from consent.cache import InProcessPolicyCache, RedisPolicyCache, UncachedPolicies
from consent.policies import NORMAL, Policy


def make_cache(kind: str):
    if kind == "in-process":
        return InProcessPolicyCache()
    if kind == "uncached":
        return UncachedPolicies()
    url = os.environ.get("EPR_TEST_REDIS_URL")
    if not url:
        pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
    client = redis.Redis.from_url(url)
    client.flushdb()
    return RedisPolicyCache(client=client)


POLICY = Policy(policy_set_id="urn:uuid:00000000-0000-4000-8000-000000000001", template=202,
                patient_spid="761337610411353650", rule=NORMAL)


@pytest.mark.parametrize("kind", ["in-process", "uncached", pytest.param("redis", marks=pytest.mark.postgres)])
def test_a_cache_serves_the_store_and_forgets_on_invalidate(kind):
    cache = make_cache(kind)
    store = {"pid-1": [POLICY]}
    loads = []

    def load():
        loads.append(1)
        return list(store["pid-1"])

    first = cache.get("pid-1", load)
    store["pid-1"] = []
    cache.invalidate("pid-1")
    after_invalidate = cache.get("pid-1", load)

    assert first == [POLICY]
    assert after_invalidate == []


@pytest.mark.parametrize("kind", ["in-process", pytest.param("redis", marks=pytest.mark.postgres)])
def test_a_caching_implementation_does_not_reload_while_nothing_changed(kind):
    cache = make_cache(kind)
    loads = []

    def load():
        loads.append(1)
        return [POLICY]

    cache.get("pid-2", load)
    cache.get("pid-2", load)
    cache.get("pid-2", load)

    assert len(loads) == 1


@pytest.mark.parametrize("kind", ["in-process", "uncached", pytest.param("redis", marks=pytest.mark.postgres)])
def test_get_many_answers_as_get_and_loads_what_is_missing_in_one_call(kind):
    cache = make_cache(kind)
    store = {"pid-a": [POLICY], "pid-b": [], "pid-c": [POLICY]}
    calls: list[list[str]] = []

    def load_many(pids):
        calls.append(list(pids))
        return {pid: list(store[pid]) for pid in pids}

    cache.get("pid-a", lambda: list(store["pid-a"]))  # held by a caching implementation
    first = cache.get_many(["pid-a", "pid-b", "pid-c"], load_many)
    store["pid-c"] = []
    cache.invalidate("pid-c")  # a revocation: the next batch sees it
    second = cache.get_many(["pid-a", "pid-b", "pid-c"], load_many)

    assert first == {"pid-a": [POLICY], "pid-b": [], "pid-c": [POLICY]}
    assert second == {"pid-a": [POLICY], "pid-b": [], "pid-c": []}
    assert cache.get_many([], load_many) == {}
    if kind == "uncached":
        assert calls == [["pid-a", "pid-b", "pid-c"]] * 2
    else:
        assert calls == [["pid-b", "pid-c"], ["pid-c"]]


@pytest.mark.postgres
def test_redis_get_many_reads_the_versions_before_the_store():
    """A write landing between the store read and the caching must not leave its stale copy served."""
    cache = make_cache("redis")
    store = {"pid-r": [POLICY]}

    def load_then_revoked(pids):
        answer = {pid: list(store[pid]) for pid in pids}
        store["pid-r"] = []
        cache.invalidate("pid-r")  # the revocation commits after this batch read the store
        return answer

    assert cache.get_many(["pid-r"], load_then_revoked) == {"pid-r": [POLICY]}
    assert cache.get_many(["pid-r"], lambda pids: {pid: list(store[pid]) for pid in pids}) == {"pid-r": []}
    assert cache.get("pid-r", lambda: pytest.fail("the copy is current")) == []
