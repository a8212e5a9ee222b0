"""One conformance test set for every SearchPages implementation (in-process, Redis, none): a page is
reused only while its patient's documents and the identity links are unchanged, never across another
set of visible levels, and never past its TTL; Redis out of reach means reading the store."""

from __future__ import annotations

import os
import time

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from adapters.cara.mhd_search import DocumentQuery
from gateway.exchanges.search_pages import InProcessSearchPages, NoSearchPages, RedisSearchPages


def make_pages(kind: str, ttl: float = 60.0):
    if kind == "in-process":
        return InProcessSearchPages(ttl_seconds=ttl)
    url = os.environ.get("EPR_TEST_REDIS_URL")
    if not url:
        pytest.fail("EPR_TEST_REDIS_URL is not set: run the suite with `make test`, which starts Redis")
    client = redis.Redis.from_url(url)
    client.flushdb()
    return RedisSearchPages(client=client, ttl_seconds=ttl)


KINDS = ["in-process", pytest.param("redis", marks=pytest.mark.postgres)]


class Store:
    """Counts the searches that reached it; answers (total, [a page naming its query])."""

    def __init__(self):
        self.searches = 0

    def search(self, query: DocumentQuery):
        def run():
            self.searches += 1
            return self.searches, [f"{query.patient_pid}:{self.searches}"]
        return run


def query(pid: str = "pid-1", levels: tuple[str, ...] = ("normal",), **filters) -> DocumentQuery:
    return DocumentQuery(patient_pid=pid, confidentiality=levels, **filters)


@pytest.mark.parametrize("kind", KINDS)
def test_a_page_is_reused_while_nothing_changed(kind):
    pages, store = make_pages(kind), Store()
    first = pages.get(query(), store.search(query()))
    again = pages.get(query(), store.search(query()))
    assert (first, again, store.searches) == ((1, ["pid-1:1"]), (1, ["pid-1:1"]), 1)


@pytest.mark.parametrize("kind", KINDS)
def test_new_documents_of_the_patient_are_seen_at_once_and_other_patients_pages_kept(kind):
    pages, store = make_pages(kind), Store()
    pages.get(query("pid-1"), store.search(query("pid-1")))
    pages.get(query("pid-2"), store.search(query("pid-2")))
    pages.documents_changed("pid-1")
    assert pages.get(query("pid-1"), store.search(query("pid-1"))) == (3, ["pid-1:3"])
    assert pages.get(query("pid-2"), store.search(query("pid-2"))) == (2, ["pid-2:2"])
    assert store.searches == 3


@pytest.mark.parametrize("kind", KINDS)
def test_a_merge_or_unmerge_forgets_every_page(kind):
    pages, store = make_pages(kind), Store()
    for pid in ("pid-1", "pid-2"):
        pages.get(query(pid), store.search(query(pid)))
    pages.identities_changed()
    for pid in ("pid-1", "pid-2"):
        pages.get(query(pid), store.search(query(pid)))
    assert store.searches == 4


@pytest.mark.parametrize("kind", KINDS)
def test_other_visible_levels_or_filters_are_another_page(kind):
    """The levels come from the consent decision made for this request: a principal who may see
    less never gets the page of one who may see more."""
    pages, store = make_pages(kind), Store()
    pages.get(query(levels=("normal", "restricted")), store.search(query()))
    assert pages.get(query(levels=("normal",)), store.search(query())) == (2, ["pid-1:2"])
    assert pages.get(query(levels=("normal",), count=5), store.search(query())) == (3, ["pid-1:3"])
    assert store.searches == 3


@pytest.mark.parametrize("kind", KINDS)
def test_each_cursor_position_and_snapshot_is_its_own_page_and_forgotten_on_change(kind):
    """Cursor pages (ITI-67 `_cursor`) are remembered like first pages: per keyset position and snapshot."""
    pages, store = make_pages(kind), Store()
    after_b, after_a = query(after=(50, "b"), through=90), query(after=(40, "a"), through=90)
    pages.get(after_b, store.search(after_b))
    assert pages.get(after_b, store.search(after_b)) == (1, ["pid-1:1"])
    assert pages.get(after_a, store.search(after_a)) == (2, ["pid-1:2"])
    assert pages.get(query(after=(50, "b"), through=95), store.search(after_b)) == (3, ["pid-1:3"])
    pages.documents_changed("pid-1")
    assert pages.get(after_b, store.search(after_b)) == (4, ["pid-1:4"])
    assert store.searches == 4


@pytest.mark.parametrize("kind", KINDS)
def test_a_page_expires_after_its_ttl(kind):
    pages, store = make_pages(kind, ttl=0.1), Store()
    pages.get(query(), store.search(query()))
    time.sleep(0.15)
    pages.get(query(), store.search(query()))
    assert store.searches == 2


def test_without_redis_every_search_reads_the_store():
    unreachable = redis.Redis(host="127.0.0.1", port=1, socket_timeout=0.2, socket_connect_timeout=0.2,
                              retry=Retry(NoBackoff(), 0))
    pages, store = RedisSearchPages(client=unreachable), Store()
    pages.get(query(), store.search(query()))
    pages.get(query(), store.search(query()))
    pages.documents_changed("pid-1")  # logged, not raised: the change itself is committed
    assert store.searches == 2


def test_switched_off_every_search_reads_the_store():
    pages, store = NoSearchPages(), Store()
    for _ in range(3):
        pages.get(query(), store.search(query()))
    assert store.searches == 3


def test_in_process_pages_follow_the_store_version_of_changes_made_elsewhere():
    versions = {"pid-1": 0}
    pages, store = InProcessSearchPages(ttl_seconds=60, store_version=versions.get), Store()
    first = pages.get(query(), store.search(query()))
    versions["pid-1"] = 1  # another process committed a document of pid-1 (this one was not told)
    after = pages.get(query(), store.search(query()))
    again = pages.get(query(), store.search(query()))
    assert (first, after, again, store.searches) == ((1, ["pid-1:1"]), (2, ["pid-1:2"]), (2, ["pid-1:2"]), 2)
