"""EPR_ENV fails closed: only `development` and `production` are known. Any other value (`prod`,
`Production`, a typo, empty) used to run as development — development keys, the development sign-in,
`token` — and is now refused at start by every command that reads the settings and by the uvicorn
worker's factory: one line naming the variable and its value, exit 2, nothing generated."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from functional.test_first_hour import ROOT, run_cli
from gateway.settings import Settings

GLN = "7601000000002"
REFUSAL = ": EPR_ENV='prod': Input should be 'development' or 'production'\n"


def commands(tmp_path: Path) -> list[tuple[str, tuple[str, ...]]]:
    """Every command that reads the settings, each as it would be typed: (command, arguments)."""
    source = tmp_path / "export"
    source.mkdir(exist_ok=True)
    feed = tmp_path / "patients.ndjson"
    feed.write_text("")
    return [("serve", ("serve",)), ("bridge", ("bridge",)), ("bridge held", ("bridge", "held")),
            ("bridge retry", ("bridge", "retry")), ("keys rotate", ("keys", "rotate")),
            ("audit verify", ("audit", "verify")), ("audit export", ("audit", "export")), ("certs", ("certs",)),
            ("token", ("token", "--role", "HCP", "--gln", GLN)), ("migrate", ("migrate", "status")),
            ("migrate", ("migrate", "retry", "--as-gln", GLN)), ("migrate", ("migrate", str(source), "--as-gln", GLN)),
            ("migrate", ("migrate", "verify", str(source), "--as-gln", GLN)),
            ("infomed feed", ("infomed", "feed", str(feed))), ("held", ("held",))]


NO_SETTINGS = {"infomed generate": "writes a synthetic export to --out; reads no setting"}


@pytest.mark.parametrize("index", range(15))
def test_every_command_refuses_an_unknown_environment(capsys, monkeypatch, tmp_path, index):
    _, args = commands(tmp_path)[index]

    code, out, err = run_cli(capsys, monkeypatch, tmp_path, *args, EPR_ENV="prod")

    assert (code, out) == (2, "")
    assert err.startswith("epr-gateway ") and err.endswith(REFUSAL) and err.count("\n") == 1, err
    assert not (tmp_path / "data").exists()  # no development key, certificate or database was made
    assert not (tmp_path / "home").exists()  # no running-gateway note


def every_command(command, prefix: tuple[str, ...] = ()):
    """The command line's commands as typed (a group that runs by itself, like `bridge`, is one)."""
    subcommands = getattr(command, "commands", None)
    if not subcommands:
        yield " ".join(prefix)
        return
    if prefix and command.invoke_without_command:
        yield " ".join(prefix)
    for name, sub in subcommands.items():
        yield from every_command(sub, prefix + (name,))


def test_the_list_holds_every_command_of_the_command_line(tmp_path):
    """A new command joins `commands` (or says in NO_SETTINGS why it reads no setting)."""
    import typer

    from gateway.cli import app

    listed = {name for name, _ in commands(tmp_path)}
    assert (len(commands(tmp_path)), listed | set(NO_SETTINGS)) == (15, set(every_command(typer.main.get_command(app))))


@pytest.mark.parametrize("value", ["prod", "Production", "PRODUCTION", "production ", " development", "dev",
                                   "staging", "test", ""])
def test_no_spelling_but_the_two_known_ones_is_accepted(capsys, monkeypatch, tmp_path, value):
    code, out, err = run_cli(capsys, monkeypatch, tmp_path, "certs", EPR_ENV=value)

    assert (code, out) == (2, "")
    assert err == f"epr-gateway certs: EPR_ENV={value!r}: Input should be 'development' or 'production'\n"
    assert not (tmp_path / "data").exists()


def test_the_two_known_values_are_accepted():
    assert [Settings(env=value).is_production for value in ("development", "production")] == [False, True]


def test_production_spelled_right_still_refuses_the_development_commands(capsys, monkeypatch, tmp_path):
    code, out, err = run_cli(capsys, monkeypatch, tmp_path, "certs", EPR_ENV="production")

    assert (code, out, err) == (2, "", "refused: 'certs' uses development keys and does not run with "
                                       "EPR_ENV=production\n")


def test_the_worker_factory_refuses_an_unknown_environment_in_one_line(tmp_path):
    """`uvicorn --factory gateway.asgi:create` (what `serve` starts in each worker, and what an operator
    may run directly): exit 2 before anything is prepared."""
    done = subprocess.run([sys.executable, "-c", "from gateway.asgi import create; create()"],
                          env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT), "HOME": str(tmp_path),
                               "EPR_ENV": "Production", "EPR_DATA_DIR": str(tmp_path / "data")},
                          capture_output=True, text=True, timeout=60, cwd=tmp_path)

    assert (done.returncode, done.stdout) == (2, "")
    # The last line is ours (authlib prints a deprecation notice of its own when the app's modules load).
    assert done.stderr.splitlines()[-1] == ("epr-gateway worker: EPR_ENV='Production': Input should be "
                                            "'development' or 'production'")
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "data").exists()
