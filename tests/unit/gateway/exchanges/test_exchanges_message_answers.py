"""`MessageAnswers` (gateway/exchanges/message_answers.py) on both stores (SQLite and PostgreSQL: its
look-ups are plain SQL per driver): an answer is kept per (sender, MSH-10, digest) — the same message
gets its first answer, a reused MSH-10 with other content is another message — and a failure of the
gateway itself is not kept."""

from __future__ import annotations

import pytest

from adapters.cara.store.message_inbox import DatabaseMessageInbox
from conftest import make_settings
from gateway.exchanges.message_answers import Answer, MessageAnswers, MessageKey
from gateway.first_start import prepare
from gateway.wiring import build_runtime


@pytest.fixture
def store(tmp_path, database_url):
    runtime = build_runtime(prepare(make_settings(tmp_path / "data", database_url)).settings)
    yield runtime
    runtime.close()


@pytest.fixture
def answers(store):
    return MessageAnswers(inbox=DatabaseMessageInbox(engine=store.engine, keyring=store.keyring))


FIRST = MessageKey("kis-a", "1", "digest-of-the-first")
REUSED = MessageKey("kis-a", "1", "digest-of-another-message")  # MSH-10 reused after a restart
OTHER_SENDER = MessageKey("kis-b", "1", "digest-of-the-first")


def test_an_answer_is_kept_per_message_and_found_again(answers):
    assert answers.keep(FIRST, Answer("AA", b"MSA|AA|1")) == b"MSA|AA|1"

    assert answers.earlier(FIRST) == b"MSA|AA|1"
    assert (answers.earlier(REUSED), answers.earlier(OTHER_SENDER)) == (None, None)
    assert answers.earlier_many([FIRST, REUSED, OTHER_SENDER]) == {FIRST: b"MSA|AA|1"}
    assert answers.earlier_many([]) == {}


def test_a_concurrent_copys_kept_answer_wins(answers):
    answers.keep(FIRST, Answer("AA", b"MSA|AA|1"))

    assert answers.keep(FIRST, Answer("AE", b"MSA|AE|1")) == b"MSA|AA|1"
    assert answers.earlier(FIRST) == b"MSA|AA|1"


def test_a_failure_of_the_gateway_is_answered_but_not_kept(answers):
    assert answers.keep(FIRST, Answer("AR", b"MSA|AR|1 try again", kept=False)) == b"MSA|AR|1 try again"

    assert answers.earlier(FIRST) is None  # the sender's retry is processed afresh


def test_answers_kept_in_the_callers_transaction_commit_or_roll_back_with_it(answers, store):
    engine = store.engine
    with engine.begin() as connection:
        answers.keep_in(connection, [(FIRST, Answer("AA", b"A")), (REUSED, Answer("AR", b"R", kept=False)),
                                     (OTHER_SENDER, Answer("AE", b"E"))])
        assert answers.earlier_in(connection, [FIRST, REUSED, OTHER_SENDER]) == {FIRST: b"A", OTHER_SENDER: b"E"}
    with pytest.raises(RuntimeError), engine.begin() as connection:
        answers.keep_in(connection, [(REUSED, Answer("AA", b"later"))])
        raise RuntimeError("the batch failed")

    assert answers.earlier_many([FIRST, REUSED, OTHER_SENDER]) == {FIRST: b"A", OTHER_SENDER: b"E"}
