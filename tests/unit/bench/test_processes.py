"""Benchmarks stop what they start, however they end: a benchmark sent SIGTERM or SIGHUP still stops
the servers it started in sessions of their own (bench/processes.py)."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[3] / "bench"
sys.path.insert(0, str(BENCH))

from processes import ProcessGroup, stop_process  # noqa: E402


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is dead for our purposes (its parent has not reaped it yet).
    return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"


def wait_gone(pid: int, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not alive(pid)


def started_driver(tmp_path: Path, *child: str) -> tuple[subprocess.Popen, int]:
    """bench/processes.py as a benchmark would use it: a child in its own session, then waiting."""
    pid_file = tmp_path / "child.pid"
    driver = subprocess.Popen([sys.executable, str(BENCH / "processes.py"), str(pid_file), *child])
    deadline = time.monotonic() + 30
    while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return driver, int(pid_file.read_text())


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT])
def test_a_benchmark_stopped_by_a_signal_stops_what_it_started(tmp_path, signum):
    driver, child = started_driver(tmp_path, "sleep", "300")
    assert alive(child) and os.getpgid(child) != os.getpgid(driver.pid)  # out of reach of the driver's group

    driver.send_signal(signum)

    assert driver.wait(timeout=30) == 128 + signum
    assert wait_gone(child)


def test_a_group_member_that_ignores_sigterm_is_killed(tmp_path):
    script = "import signal, subprocess, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); " \
             "subprocess.Popen(['sleep', '300']); time.sleep(300)"
    with ProcessGroup(grace_seconds=1) as group:
        leader = group.start([sys.executable, "-c", script], env=dict(os.environ), log=tmp_path / "log", cwd=tmp_path)
        time.sleep(0.5)
        members = [int(p) for p in subprocess.run(["pgrep", "-g", str(leader.pid)], capture_output=True,
                                                  text=True).stdout.split()]
    assert len(members) == 2 and all(wait_gone(pid) for pid in members)


def test_stopping_a_process_that_already_ended_is_quiet(tmp_path):
    with ProcessGroup() as group:
        ended = group.start(["true"], env=dict(os.environ), log=tmp_path / "log", cwd=tmp_path)
        ended.wait(timeout=10)
    stop_process(ended)
    assert ended.returncode == 0
