"""The collector held back for a migration run: raised thresholds and what existed before frozen while
the run lasts, the process's own settings back afterwards, also when the run fails."""

import gc

import pytest

from gateway.migration.collector import THRESHOLDS, collector_held_back


@pytest.fixture(autouse=True)
def default_collector():
    previous = gc.get_threshold()
    gc.unfreeze()
    yield
    gc.set_threshold(*previous)
    gc.unfreeze()


def test_held_back_while_the_run_lasts_and_restored_after():
    gc.set_threshold(700, 10, 10)
    long_lived = [[i] for i in range(1000)]  # state that exists before the run
    with collector_held_back():
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() >= len(long_lived)
        cycle: list = []
        cycle.append(cycle)  # garbage cycles made during the run are still collectable
        del cycle
        assert gc.collect() >= 1
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0


def test_restored_when_the_run_fails():
    gc.set_threshold(700, 10, 10)
    with pytest.raises(RuntimeError), collector_held_back():
        raise RuntimeError("the run stops")
    assert gc.get_threshold() == (700, 10, 10)
    assert gc.get_freeze_count() == 0
