"""`epr-gateway backup` and `restore`: a consistent copy of a serving gateway, and a new data directory
made from one (part of the composition root; `check-restore` is `gateway/restore_check.py`).

What a backup holds (`--to DIR`): the database (embedded default: SQLite's online backup API, one
consistent snapshot while the gateway writes; PostgreSQL: pgBackRest, see the README, so none here), the
ledger's witness file and its signing key, the senders file, the settings it needs (the non-secret EPR_*
values; the deployment's own files — TLS, trusted issuers, the portal's directory — come from where they
are managed), and `manifest.json`: a SHA-256 per file, the rows per table and the recovery point (the
last audit record) of the snapshot, the key ids its data keys are wrapped under.
The keyring goes elsewhere (`--keys-to DIR2`, its own manifest): whoever holds one archive does not hold
the other, so keys and data are never in the same archive.

Order: the witness is copied before the snapshot, so its last head is one the snapshot holds (a witness
ahead of the database is what a ledger cut back looks like).
"""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import sqlite3
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Engine, make_url, select

from adapters.cara.crypto import Keyring
from adapters.cara.store.database import make_engine
from adapters.cara.store.restore_checks import key_ids_in_use, table_counts
from audit.schema import audit_record
from gateway.settings import Settings

DATABASE = "gateway.sqlite3"
MANIFEST = "manifest.json"
KEYS = "keyring.json"
SECRET_SETTINGS = {"portal_oidc_client_secret"}
# Files a backup copies: name in the backup → the setting that names it, and the folder of the new data
# directory where a restore puts it (under the name it had: a DEVELOPMENT key stays labelled as one).
FILES = {"witness.jsonl": ("audit_witness", "audit"),
         "audit-signing-key.pem": ("audit_signing_key", "audit"),
         "senders.json": ("mllp_senders", ".")}


class BackupRefused(Exception):
    """The backup or restore cannot be made as asked (one line for the operator)."""


@dataclass
class Manifest:
    created_at: str
    store: str  # sqlite | postgresql
    files: dict[str, dict]  # name → {"sha256", "bytes"}
    counts: dict[str, int]
    recovery_point: dict | None  # {"seq", "recorded_at"} of the last audit record
    key_ids: list[str]  # the keys the stored data keys are wrapped under
    settings: dict

    def write(self, directory: Path) -> None:
        (directory / MANIFEST).write_text(json.dumps(asdict(self), indent=2, sort_keys=True))

    @classmethod
    def read(cls, directory: Path) -> Manifest:
        try:
            return cls(**json.loads((directory / MANIFEST).read_text()))
        except (OSError, ValueError, TypeError) as error:
            raise BackupRefused(f"{directory / MANIFEST} cannot be read: {error}") from None


def sha256(path: Path) -> dict:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return {"sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def recovery_point(engine: Engine) -> dict | None:
    with engine.connect() as connection:
        last = connection.execute(select(audit_record.c.seq, audit_record.c.recorded_at)
                                  .order_by(audit_record.c.seq.desc()).limit(1)).first()
    return None if last is None else {"seq": last.seq, "recorded_at": last.recorded_at.isoformat()}


def _empty_directory(path: Path, what: str) -> None:
    if path.exists() and any(path.iterdir()):
        raise BackupRefused(f"{what} {path} is not empty")
    path.mkdir(parents=True, exist_ok=True)


def _apart(data: Path, keys: Path) -> None:
    data, keys = data.resolve(), keys.resolve()
    if data == keys or data in keys.parents or keys in data.parents:
        raise BackupRefused(f"--keys-to {keys} and --to {data} must be apart: keys and data never in one archive")


def snapshot_sqlite(source_url: str, target: Path) -> None:
    """One consistent copy of the live database (SQLite's backup API, in one step: a read transaction,
    which in WAL mode does not stop the gateway's writers), checked before it is kept."""
    source = sqlite3.connect(make_url(source_url).database, timeout=30)
    copy = sqlite3.connect(target)
    try:
        source.backup(copy)
        if copy.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise BackupRefused("the snapshot does not pass SQLite's integrity check")
    finally:
        copy.close()
        source.close()


def as_one_file(path: Path) -> None:
    """Rollback-journal mode: the whole database in its one file (what the checksum covers); the gateway
    that opens a restore turns WAL on again."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("PRAGMA journal_mode=DELETE")
    finally:
        connection.close()


def backup(settings: Settings, *, to: Path, keys_to: Path | None) -> Manifest:
    if keys_to is not None:
        _apart(to, keys_to)
    _empty_directory(to, "--to")
    sqlite = settings.resolved_database_url.startswith("sqlite")
    copied = {}
    for name, (setting, _) in FILES.items():
        path = settings.audit_witness_path if setting == "audit_witness" else (
            settings.audit_signing_key_path if setting == "audit_signing_key" else getattr(settings, setting))
        if path is not None and Path(path).exists():
            shutil.copy2(path, to / name)  # the witness first (see the module's docstring)
            copied[name] = {**sha256(to / name), "name": Path(path).name}
    if sqlite:
        snapshot_sqlite(settings.resolved_database_url, to / DATABASE)
        engine = make_engine(f"sqlite:///{to / DATABASE}")
    else:  # the rows and recovery point as they are now (pgBackRest holds the database itself)
        engine = make_engine(settings.resolved_database_url)
    try:
        keyring = Keyring.load(settings.keyring_path)
        manifest = Manifest(created_at=datetime.now(UTC).isoformat(timespec="seconds"),
                            store="sqlite" if sqlite else "postgresql", files=copied, counts=table_counts(engine),
                            recovery_point=recovery_point(engine),
                            key_ids=key_ids_in_use(engine=engine, keyring=keyring),
                            settings=settings.model_dump(mode="json", exclude=SECRET_SETTINGS))
    finally:
        engine.dispose()
    if sqlite:
        as_one_file(to / DATABASE)
        manifest.files[DATABASE] = sha256(to / DATABASE)
    manifest.write(to)
    if keys_to is not None:
        _empty_directory(keys_to, "--keys-to")
        shutil.copy2(settings.keyring_path, keys_to / KEYS)
        (keys_to / KEYS).chmod(0o600)
        (keys_to / MANIFEST).write_text(json.dumps({"created_at": manifest.created_at, "files": {
            KEYS: sha256(keys_to / KEYS)}, "key_ids": keyring.key_ids}, indent=2))
    return manifest


def verify_files(directory: Path, files: dict[str, dict]) -> None:
    for name, expected in files.items():
        path = directory / name
        if not path.exists() or sha256(path) != {k: expected[k] for k in ("sha256", "bytes")}:
            raise BackupRefused(f"{path} is missing or not the file backed up (checksum)")


def restore(*, source: Path, keys_from: Path, data_dir: Path, database_url: str | None = None) -> Path:
    """A new data directory from a backup and its key set; returns the `restored.env` to source."""
    manifest = Manifest.read(source)
    verify_files(source, manifest.files)
    keys = json.loads((keys_from / MANIFEST).read_text()) if (keys_from / MANIFEST).exists() else None
    if keys is None:
        raise BackupRefused(f"{keys_from} holds no key set (manifest.json)")
    verify_files(keys_from, keys["files"])
    missing = sorted(set(manifest.key_ids) - set(keys["key_ids"]))
    if missing:
        raise BackupRefused(f"the key set {keys_from} lacks {', '.join(missing)}, under which this backup's data "
                            "keys are wrapped: take the key set saved with this backup")
    if manifest.store == "postgresql" and not database_url:
        raise BackupRefused("this backup's database is in pgBackRest: restore it there, then pass --database-url")
    _empty_directory(data_dir, "--data-dir")
    data_dir = data_dir.resolve()
    env = {"EPR_DATA_DIR": str(data_dir), "EPR_KEYRING": str(data_dir / KEYS)}
    shutil.copy2(keys_from / KEYS, data_dir / KEYS)
    if manifest.store == "sqlite":
        shutil.copy2(source / DATABASE, data_dir / DATABASE)
        env["EPR_DATABASE_URL"] = f"sqlite:///{data_dir / DATABASE}"
    else:
        env["EPR_DATABASE_URL"] = database_url
    for name, (setting, folder) in FILES.items():
        if name in manifest.files:
            place = data_dir / folder / manifest.files[name]["name"]
            place.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source / name, place)
            env[f"EPR_{setting.upper()}"] = str(place)
    kept = ("env", "community_oid", "audit_source_oid", "audit_checkpoint_every", "audience", "public_base_url")
    env |= {f"EPR_{name.upper()}": str(manifest.settings[name]) for name in kept if manifest.settings.get(name)}
    (data_dir / "restored-from").mkdir()
    manifest.write(data_dir / "restored-from")
    restored = data_dir / "restored.env"
    restored.write_text("".join(f"export {name}={shlex.quote(value)}\n" for name, value in sorted(env.items())))
    return restored
