"""The background WAL checkpointer: the writer's commits no longer checkpoint, the thread keeps the WAL
small, and every committed row is there after a restart."""

import threading
import time

import pytest
from sqlalchemy import create_engine, text

from adapters.cara.store.database import make_engine
from adapters.cara.store.wal_checkpoint import WalCheckpointer


def wal_pages(engine) -> int:
    with engine.connect() as connection:
        _, log_pages, _ = connection.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
    return log_pages


def test_commits_do_not_checkpoint_and_the_thread_does(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x BLOB)"))
    checkpointer = WalCheckpointer(engine, interval=3600)  # the thread waits: only the commits could checkpoint
    checkpointer.start()
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA wal_autocheckpoint")).scalar_one() == 0
    for _ in range(40):  # ~5.6 MB: past the 1,000 pages at which a commit would checkpoint by default
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (randomblob(140000))"))
    # Every frame since the start is still in the WAL: no commit checkpointed (by default one would have
    # at 1,000 pages and the WAL would restart, holding fewer than 1,000 + one transaction's 35).
    assert wal_pages(engine) > 1_300
    checkpointer.stop()
    engine.dispose()

    reopened = create_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with reopened.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 40
    reopened.dispose()


def test_the_thread_checkpoints_on_its_own(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x BLOB)"))
    checkpointer = WalCheckpointer(engine, interval=0.05)
    checkpointer.start()
    for _ in range(10):
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (randomblob(100000))"))
    time.sleep(0.3)
    with engine.connect() as connection:  # every frame of the WAL is already in the database file
        _, log_pages, checkpointed = connection.execute(text("PRAGMA wal_checkpoint(PASSIVE)")).one()
    checkpointer.stop()
    engine.dispose()
    assert log_pages == checkpointed


def test_postgresql_engines_are_left_alone():
    engine = create_engine("postgresql+psycopg://nobody@127.0.0.1:1/none")
    checkpointer = WalCheckpointer(engine)
    checkpointer.start()  # connects to nothing, starts nothing
    assert checkpointer._thread is None
    checkpointer.stop()



@pytest.mark.parametrize("restart_frames, rewound", [(500, True), (10**9, False)])
def test_a_long_wal_is_rewound_although_the_writer_never_pauses(tmp_path, restart_frames, rewound):
    """SQLite writes the WAL from its start again only when a transaction begins after a checkpoint
    that copied every frame. A PASSIVE checkpoint that meets a writer in the middle of its next
    transaction (a migration's writer always is) copies what was committed, the writer then commits
    more, and the WAL is never rewound: it grew by every byte written (8.5 GB after 100,000
    documents). Past `restart_frames` the checkpointer waits for the writer's transaction and copies
    the rest (RESTART), so the next transaction writes from the start."""
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE t (x BLOB)"))
    checkpointer = WalCheckpointer(engine, interval=3600, restart_frames=restart_frames)  # run by hand below
    checkpointer.start()
    for _ in range(20):  # ~700 frames committed, none copied yet
        with engine.begin() as connection:
            connection.execute(text("INSERT INTO t VALUES (randomblob(140000))"))
    writer = engine.connect()
    transaction = writer.begin()
    writer.execute(text("INSERT INTO t VALUES (randomblob(140000))"))  # the next batch, not committed yet
    checkpoint = threading.Thread(target=checkpointer._checkpoint)
    checkpoint.start()
    time.sleep(0.3)  # the checkpoint meets the open transaction
    transaction.commit()
    writer.close()
    checkpoint.join(10)
    with engine.begin() as connection:  # the batch after
        connection.execute(text("INSERT INTO t VALUES (randomblob(140000))"))
    frames = wal_pages(engine)
    checkpointer.stop()
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM t")).scalar_one() == 22
    engine.dispose()
    if rewound:
        assert frames < 100  # the last transaction's ~35 frames, written from the WAL's start
    else:  # what RESTART is there for, shown, so that the bound above means something
        assert frames > 700
