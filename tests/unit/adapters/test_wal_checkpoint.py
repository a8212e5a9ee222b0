"""The background WAL checkpointer: the writer's commits no longer checkpoint, the thread keeps the WAL
small, and every committed row is there after a restart."""

import time

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
