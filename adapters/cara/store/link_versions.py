"""Versions of the MPI's merge links, so that every worker drops its SPID → MPI-PID answers (and its
merged records) when a merge or an unmerge happens in any of them.

Why: `DatabasePatientIndex` keeps per process what a SPID resolves to and which patients make up a
merged record (asked on every exchange). Only a merge or an unmerge changes those answers. The
worker that makes the change clears its own copy; the others learn of it here, the way the policy
cache does (`consent.cache.RedisPolicyCache`): a counter in Redis is read with each look-up and
bumped after every link change, and a worker serves its copy only while the counter it was read
under is unchanged.

- `UncachedLinks`: several workers without Redis: nothing is remembered (every look-up reads the MPI).
- `InProcessLinkVersion`: one worker (or SQLite): every change goes through this process.
- `RedisLinkVersion`: several workers. Redis unreachable: the look-up fails closed
  (`LinkVersionUnavailable`, 503) rather than decide on a link that may be stale.
"""

from __future__ import annotations

import threading
from typing import Protocol

import redis

from adapters.cara.errors import StoreUnavailable


class LinkVersionUnavailable(StoreUnavailable):
    pass


class LinkVersion(Protocol):
    def current(self) -> object: ...

    def bump(self) -> None: ...


class UncachedLinks:
    def current(self) -> object:
        return object()  # never equal to the last one: nothing remembered is ever served

    def bump(self) -> None:
        return None


class InProcessLinkVersion:
    def __init__(self) -> None:
        self._version = 0
        self._lock = threading.Lock()

    def current(self) -> object:
        return self._version

    def bump(self) -> None:
        with self._lock:
            self._version += 1


class RedisLinkVersion:
    def __init__(self, *, client: redis.Redis, key: str = "epr:identity-links-version"):
        self._redis = client
        self._key = key

    def current(self) -> object:
        try:
            return self._redis.get(self._key)
        except redis.RedisError as exc:
            raise LinkVersionUnavailable("the identity link version (Redis) cannot be asked") from exc

    def bump(self) -> None:
        try:
            self._redis.incr(self._key)
        except redis.RedisError as exc:
            raise LinkVersionUnavailable("the identity link version (Redis) cannot be moved") from exc
