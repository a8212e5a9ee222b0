"""Which development gateway `token` mints for: the shell's explicit settings win, notes are kept per
data directory, and a choice among several running gateways is said."""

import os
import subprocess
import sys

import pytest

from gateway.running_note import RunningGateway, choose, note_path, read_note, remove_note, running_gateways, write_note


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def gateway(data_dir, port: int, started: float, pid: int | None = None) -> RunningGateway:
    return RunningGateway(pid=pid or os.getpid(), data_dir=str(data_dir.resolve()), issuer_url=f"https://127.0.0.1:{port}/dev",
                          audience=f"https://127.0.0.1:{port}/fhir", base_url=f"https://127.0.0.1:{port}/fhir",
                          started=started)


def test_two_checkouts_keep_their_own_notes(home):
    first, second = gateway(home / "a" / "var", 8443, 1.0), gateway(home / "b" / "var", 9443, 2.0)
    write_note(first)
    write_note(second)

    assert note_path(home / "a" / "var") != note_path(home / "b" / "var")
    assert (read_note(home / "a" / "var"), read_note(home / "b" / "var")) == (first, second)
    assert running_gateways() == [second, first]


def test_an_explicit_data_dir_wins_over_every_note(home):
    mine, other = gateway(home / "mine", 8443, 1.0), gateway(home / "other", 9443, 2.0)
    write_note(mine)
    write_note(other)

    assert choose({"EPR_DATA_DIR": str(home / "mine")}).gateway == mine
    # No gateway runs on that data: the shell's own settings, not someone else's gateway.
    assert choose({"EPR_DATA_DIR": str(home / "third")}).gateway is None


def test_an_explicit_port_names_the_gateway_listening_there(home):
    first, second = gateway(home / "a", 8443, 1.0), gateway(home / "b", 9443, 2.0)
    write_note(first)
    write_note(second)

    assert choose({"EPR_PORT": "8443"}).gateway == first
    assert choose({"EPR_PORT": "9443"}).gateway == second
    assert choose({"EPR_PORT": "9"}).gateway is None


def test_with_nothing_explicit_this_directorys_gateway_comes_first(home):
    here, newer = gateway(home / "var", 8443, 1.0), gateway(home / "elsewhere", 9443, 2.0)
    write_note(here)
    write_note(newer)

    assert choose({}).gateway == here and choose({}).says == []


def test_one_running_gateway_is_chosen_without_a_word(home):
    only = gateway(home / "elsewhere", 9443, 2.0)
    write_note(only)

    assert choose({}) == type(choose({}))(only, [])


def test_among_several_the_last_started_is_chosen_and_the_choice_said(home):
    older, newer = gateway(home / "a", 8443, 1.0), gateway(home / "b", 9443, 2.0)
    write_note(older)
    write_note(newer)

    choice = choose({})

    assert choice.gateway == newer
    assert choice.says == ["2 development gateways are running; this token is for the one started last, at "
                           f"https://127.0.0.1:9443/fhir (data {newer.data_dir}). The others: "
                           "https://127.0.0.1:8443/fhir. Set EPR_DATA_DIR or EPR_PORT to choose."]


def test_a_stopped_gateways_note_no_longer_counts(home):
    write_note(gateway(home / "a", 8443, 1.0, pid=dead_pid()))

    assert (read_note(home / "a"), running_gateways(), choose({}).gateway) == (None, [], None)


def test_a_gateway_removes_only_its_own_note(home):
    mine = gateway(home / "a", 8443, 1.0)
    write_note(mine)

    remove_note(dead_pid(), home / "a")
    assert read_note(home / "a") == mine
    remove_note(os.getpid(), home / "a")
    assert read_note(home / "a") is None
