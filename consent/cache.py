"""Caches of the patients' policies, chosen by settings, each invalidated on write.

- `UncachedPolicies`: every decision reads the store (several workers without Redis).
- `InProcessPolicyCache`: the embedded default with one worker; writes go through this process.
- `RedisPolicyCache`: several workers. A version counter per patient lives in Redis; a worker serves
  its cached copy only while the counter is unchanged, and every policy write bumps it after commit
  (keyspace versioning), so a revocation reaches every worker on the very next request. When Redis
  cannot be asked, the decision fails closed (`PolicyCacheUnavailable`) rather than use a stale copy.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

import redis

from adapters.cara.errors import StoreUnavailable
from consent.policies import Policy

Loader = Callable[[], list[Policy]]
ManyLoader = Callable[[list[str]], dict[str, list[Policy]]]  # pids → their policies (every pid answered)


class PolicyCacheUnavailable(StoreUnavailable):
    pass


class PolicyCache(Protocol):
    def get(self, pid: str, load: Loader) -> list[Policy]: ...

    def get_many(self, pids: list[str], load: ManyLoader) -> dict[str, list[Policy]]:
        """`get` of each of `pids` (distinct); those not served from the cache loaded by one `load` call."""
        ...

    def invalidate(self, pid: str) -> None: ...


class UncachedPolicies:
    def get(self, pid: str, load: Loader) -> list[Policy]:
        return load()

    def get_many(self, pids: list[str], load: ManyLoader) -> dict[str, list[Policy]]:
        return load(pids) if pids else {}

    def invalidate(self, pid: str) -> None:
        return None


class InProcessPolicyCache:
    def __init__(self, *, max_entries: int = 10_000):
        self._entries: dict[str, list[Policy]] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, pid: str, load: Loader) -> list[Policy]:
        cached = self._entries.get(pid)
        if cached is not None:
            return cached
        policies = load()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[pid] = policies
        return policies

    def get_many(self, pids: list[str], load: ManyLoader) -> dict[str, list[Policy]]:
        found = {pid: self._entries[pid] for pid in pids if pid in self._entries}
        missing = [pid for pid in pids if pid not in found]
        if missing:
            loaded = load(missing)
            with self._lock:
                if len(self._entries) + len(missing) >= self._max_entries:
                    self._entries.clear()
                for pid in missing:
                    self._entries[pid] = found[pid] = loaded[pid]
        return found

    def invalidate(self, pid: str) -> None:
        with self._lock:
            self._entries.pop(pid, None)


class RedisPolicyCache:
    def __init__(self, *, client: redis.Redis, prefix: str = "epr:policy-version:", max_entries: int = 10_000):
        self._redis = client
        self._prefix = prefix
        self._entries: dict[str, tuple[bytes | None, list[Policy]]] = {}
        self._lock = threading.Lock()
        self._max_entries = max_entries

    def get(self, pid: str, load: Loader) -> list[Policy]:
        # The version is read before the store: a write landing in between bumps it again, so the
        # copy loaded here is replaced on the next request at the latest.
        version = self._version(pid)
        cached = self._entries.get(pid)
        if cached is not None and cached[0] == version:
            return cached[1]
        policies = load()
        with self._lock:
            if len(self._entries) >= self._max_entries:
                self._entries.clear()
            self._entries[pid] = (version, policies)
        return policies

    def get_many(self, pids: list[str], load: ManyLoader) -> dict[str, list[Policy]]:
        # As `get`: every version is read (one MGET) before the store, so a write landing in between
        # leaves a copy that the next request replaces.
        if not pids:
            return {}
        try:
            versions = dict(zip(pids, self._redis.mget([self._prefix + pid for pid in pids])))
        except redis.RedisError as exc:
            raise PolicyCacheUnavailable("the policy cache (Redis) cannot be asked") from exc
        found: dict[str, list[Policy]] = {}
        for pid in pids:
            cached = self._entries.get(pid)
            if cached is not None and cached[0] == versions[pid]:
                found[pid] = cached[1]
        missing = [pid for pid in pids if pid not in found]
        if missing:
            loaded = load(missing)
            with self._lock:
                if len(self._entries) + len(missing) >= self._max_entries:
                    self._entries.clear()
                for pid in missing:
                    self._entries[pid] = (versions[pid], loaded[pid])
                    found[pid] = loaded[pid]
        return found

    def invalidate(self, pid: str) -> None:
        try:
            self._redis.incr(self._prefix + pid)
        except redis.RedisError as exc:
            raise PolicyCacheUnavailable("the policy cache (Redis) cannot be invalidated") from exc
        with self._lock:
            self._entries.pop(pid, None)

    def _version(self, pid: str) -> bytes | None:
        try:
            return self._redis.get(self._prefix + pid)
        except redis.RedisError as exc:
            raise PolicyCacheUnavailable("the policy cache (Redis) cannot be asked") from exc
