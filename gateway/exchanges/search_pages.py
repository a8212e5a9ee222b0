"""ITI-67 result pages remembered between identical searches, dropped when the record changes.

Why: practice software asks the same question again and again (the patient's documents, newest
first) and the answer only changes when a document is provided or two patients are merged. A page
is remembered per `DocumentQuery` — patient, filters, paging (offset, or a cursor's keyset position
and snapshot) *and the confidentiality levels the
principal may see* — so consent is never taken from here: the levels are decided afresh on every
request, and a principal whose grant was revoked asks a different question (or none at all).

What a page holds is the total and the entries (metadata only; the gateway keeps them decrypted in
memory anyway). A page is forgotten when its patient's documents change (`documents_changed`, after
the commit), when any identity link changes (`identities_changed`: a merge reaches the survivor's
survivor too), and after `ttl_seconds` at the latest — which bounds what a writer outside the
gateway's processes (a migration run on the same database, say) can leave stale.

- `NoSearchPages`: every search reads the store (several workers without Redis, or switched off).
- `InProcessSearchPages`: one worker. Changes made in this process bump its own counters; changes
  made by another process on the same store (the migration command beside a running gateway) are
  seen through the store's per-patient document version (`store_version`), raised in the same
  transaction as the documents and read with each search: a page is served only while it is
  unchanged, so the very next search after a commit anywhere reads the store.
- `RedisSearchPages`: several workers. Version counters in Redis (per patient, and one for the
  identity links) are read with each search in one round trip; a page is served only while both are
  unchanged. Redis unreachable: the search reads the store (a cache miss, never a stale page).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

import redis

from adapters.cara.mhd_search import DocumentQuery
from adapters.cara.store.documents import SearchResult

log = logging.getLogger("epr.gateway.exchanges.search_pages")

Page = SearchResult  # total, entries and the keyset positions of the next page
Search = Callable[[], Page]


class SearchPages(Protocol):
    def get(self, query: DocumentQuery, search: Search) -> Page: ...

    def documents_changed(self, pid: str) -> None: ...

    def identities_changed(self) -> None: ...


class NoSearchPages:
    def get(self, query: DocumentQuery, search: Search) -> Page:
        return search()

    def documents_changed(self, pid: str) -> None:
        return None

    def identities_changed(self) -> None:
        return None


class _Remembered:
    """Pages stamped with the versions they were read under, bounded in number and age."""

    def __init__(self, ttl_seconds: float, max_pages: int):
        self._ttl = ttl_seconds
        self._max_pages = max_pages
        self._pages: dict[DocumentQuery, tuple[float, object, Page]] = {}
        self._lock = threading.Lock()

    def get(self, query: DocumentQuery, stamp: object, search: Search) -> Page:
        now = time.monotonic()
        remembered = self._pages.get(query)
        if remembered is not None and remembered[0] > now and remembered[1] == stamp:
            return remembered[2]
        page = search()
        with self._lock:
            if len(self._pages) >= self._max_pages:
                self._pages.clear()
            self._pages[query] = (now + self._ttl, stamp, page)
        return page


class InProcessSearchPages:
    def __init__(self, *, ttl_seconds: float = 10.0, max_pages: int = 10_000,
                 store_version: Callable[[str], int] | None = None):
        self._remembered = _Remembered(ttl_seconds, max_pages)
        self._store_version = store_version
        self._versions: dict[str, int] = {}
        self._identities = 0
        self._lock = threading.Lock()  # changes come from the thread pool: no increment may be lost

    def get(self, query: DocumentQuery, search: Search) -> Page:
        # The stamp is taken before the store is read: a change landing in between moves it again.
        stamp = (self._versions.get(query.patient_pid, 0), self._identities,
                 self._store_version(query.patient_pid) if self._store_version else None)
        return self._remembered.get(query, stamp, search)

    def documents_changed(self, pid: str) -> None:
        with self._lock:
            self._versions[pid] = self._versions.get(pid, 0) + 1

    def identities_changed(self) -> None:
        with self._lock:
            self._identities += 1


class RedisSearchPages:
    def __init__(self, *, client: redis.Redis, prefix: str = "epr:documents-version:", ttl_seconds: float = 10.0,
                 max_pages: int = 10_000):
        self._redis = client
        self._prefix = prefix
        self._remembered = _Remembered(ttl_seconds, max_pages)

    def get(self, query: DocumentQuery, search: Search) -> Page:
        try:
            stamp = tuple(self._redis.mget(self._prefix + query.patient_pid, self._prefix + "identities"))
        except redis.RedisError as exc:
            log.warning("search pages: Redis cannot be asked (%s); reading the store", type(exc).__name__)
            return search()
        return self._remembered.get(query, stamp, search)

    def documents_changed(self, pid: str) -> None:
        self._bump(pid)

    def identities_changed(self) -> None:
        self._bump("identities")

    def _bump(self, key: str) -> None:
        try:
            self._redis.incr(self._prefix + key)
        except redis.RedisError as exc:
            # The change is committed; other workers may show the old page until it expires.
            log.warning("search pages: Redis cannot be told of a change (%s); pages expire within the TTL",
                        type(exc).__name__)
