"""Where development gateways run: one note per data directory written by `serve`, read by `token`.

Why: the development issuer's identity is its URL (host and port) and its key (in the data
directory). A token minted in another shell, with another `EPR_PORT` or from another working
directory (`EPR_DATA_DIR` defaults to the relative `var`), was signed for an issuer the running
gateway does not trust. The notes let `token` mint for a gateway that is actually running. One note
per data directory, so that a second checkout's gateway does not overwrite the first's. They hold
paths and URLs only (no key, no token); never written in production.

How `token` chooses (`choose`): settings given explicitly in the shell win — `EPR_DATA_DIR` names its
gateway's note, `EPR_PORT`/`EPR_HOST` the gateway listening there; without a running gateway there,
the shell's own settings. With nothing explicit: the gateway of this directory's default data
directory, else the only one running, else the one started last — and the choice is said.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["RunningGateway", "Choice", "notes_folder", "note_path", "write_note", "read_note", "running_gateways",
           "remove_note", "choose"]

DEFAULT_DATA_DIR = "var"  # Settings.data_dir's default, relative to the working directory


@dataclass(frozen=True)
class RunningGateway:
    pid: int
    data_dir: str  # absolute
    issuer_url: str
    audience: str
    base_url: str
    started: float = 0.0  # time.time() when `serve` wrote the note


@dataclass(frozen=True)
class Choice:
    gateway: RunningGateway | None  # None: mint with this shell's settings
    says: list[str] = field(default_factory=list)  # what the user should know about the choice


def notes_folder() -> Path:
    return Path.home() / ".epr-gateway" / "gateways"


def note_path(data_dir: str | Path) -> Path:
    """The note of the gateway serving `data_dir` (absolute or relative to the working directory)."""
    resolved = str(Path(data_dir).resolve())
    return notes_folder() / f"{hashlib.sha256(resolved.encode()).hexdigest()[:16]}.json"


def write_note(gateway: RunningGateway) -> Path:
    path = note_path(gateway.data_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(gateway), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_note(data_dir: str | Path) -> RunningGateway | None:
    """The note for `data_dir` of a gateway whose process is still alive, else None (stale notes are ignored)."""
    return _read(note_path(data_dir))


def running_gateways() -> list[RunningGateway]:
    """Every development gateway still running, the one started last first."""
    gateways = [g for g in (_read(path) for path in sorted(notes_folder().glob("*.json"))) if g is not None]
    return sorted(gateways, key=lambda g: g.started, reverse=True)


def remove_note(pid: int, data_dir: str | Path) -> None:
    """Remove the note if it is this process's (a gateway started later on the same data keeps its own)."""
    note = read_note(data_dir)
    if note is not None and note.pid == pid:
        note_path(data_dir).unlink(missing_ok=True)


def choose(environment: Mapping[str, str]) -> Choice:
    """The gateway `token` mints for, from the shell's explicit settings and the running gateways."""
    if environment.get("EPR_DATA_DIR"):
        return Choice(read_note(environment["EPR_DATA_DIR"]))
    running = running_gateways()
    if environment.get("EPR_PORT") or environment.get("EPR_HOST"):
        host, port = environment.get("EPR_HOST", "127.0.0.1"), environment.get("EPR_PORT", "8443")
        return Choice(next((g for g in running if _listens_at(g, host, port)), None))
    here = read_note(DEFAULT_DATA_DIR)
    if here is not None or len(running) <= 1:
        return Choice(here or (running[0] if running else None))
    chosen = running[0]
    return Choice(chosen, [f"{len(running)} development gateways are running; this token is for the one started "
                           f"last, at {chosen.base_url} (data {chosen.data_dir}). The others: "
                           + ", ".join(g.base_url for g in running[1:])
                           + ". Set EPR_DATA_DIR or EPR_PORT to choose."])


def _listens_at(gateway: RunningGateway, host: str, port: str) -> bool:
    address = urlsplit(gateway.base_url)
    return str(address.port) == port and address.hostname == host


def _read(path: Path) -> RunningGateway | None:
    try:
        gateway = RunningGateway(**json.loads(path.read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return gateway if _alive(gateway.pid) else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
