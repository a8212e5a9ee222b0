"""Where the development gateway runs: a per-user note written by `serve`, read by `token`.

Why: the development issuer's identity is its URL (host and port) and its key (in the data
directory). A token minted in another shell, with another `EPR_PORT` or from another working
directory (`EPR_DATA_DIR` defaults to the relative `var`), was signed for an issuer the running
gateway does not trust. The note lets `token` mint for the gateway that is actually running.
It holds paths and URLs only (no key, no token); never written in production.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["RunningGateway", "note_path", "write_note", "read_note", "remove_note"]


@dataclass(frozen=True)
class RunningGateway:
    pid: int
    data_dir: str  # absolute
    issuer_url: str
    audience: str
    base_url: str


def note_path() -> Path:
    return Path.home() / ".epr-gateway" / "development-gateway.json"


def write_note(gateway: RunningGateway) -> Path:
    path = note_path()
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(gateway), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)
    return path


def read_note() -> RunningGateway | None:
    """The note of a gateway whose process is still alive, else None (a stale note is ignored)."""
    try:
        gateway = RunningGateway(**json.loads(note_path().read_text(encoding="utf-8")))
    except (FileNotFoundError, ValueError, TypeError):
        return None
    return gateway if _alive(gateway.pid) else None


def remove_note(pid: int) -> None:
    """Remove the note if it is this process's (another gateway started later keeps its own)."""
    note = read_note()
    if note is not None and note.pid == pid:
        note_path().unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
