"""`epr-gateway backup | restore | check-restore` (part of the composition root): the commands over
`gateway/backup.py` and `gateway/restore_check.py`. A refusal is one line and exit 1 (2: a setting)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer

from gateway.settings import Settings


def backup_command(to: Path = typer.Option(..., "--to", help="an empty directory: the data backup"),
                   keys_to: Optional[Path] = typer.Option(None, "--keys-to", help="an empty directory apart from "
                                                          "--to: the keyring (never with the data)"),
                   no_keys: bool = typer.Option(False, "--no-keys", help="the keyring is backed up by its secret "
                                                "store: do not copy it")) -> None:
    """An online, consistent backup of the gateway while it serves (the embedded default's database by
    SQLite's backup API; PostgreSQL's by pgBackRest), with a manifest of checksums; the keyring apart."""
    from gateway.backup import BackupRefused, backup
    from gateway.first_start import prepare

    if keys_to is None and not no_keys:
        raise typer.BadParameter("where the keyring goes (apart from the data), or --no-keys", param_hint="--keys-to")
    started = time.monotonic()
    try:
        manifest = backup(prepare(Settings()).settings, to=to, keys_to=keys_to)
    except BackupRefused as refused:
        typer.echo(f"refused: {refused}", err=True)
        raise typer.Exit(1) from None
    point = manifest.recovery_point
    typer.echo(f"backup of the {manifest.store} store in {to} ({time.monotonic() - started:.1f} s): "
               f"{sum(manifest.counts.values())} rows, recovery point "
               + (f"audit record {point['seq']} at {point['recorded_at']} UTC" if point else "(no audit record)")
               + f"; data keys under {', '.join(manifest.key_ids) or '-'}"
               + (f"; keyring in {keys_to}" if keys_to else "; keyring not copied (--no-keys)"))
    if manifest.store == "postgresql":
        typer.echo("the database itself: pgBackRest (README, 'Backup and restore')")


def restore_command(source: Path = typer.Option(..., "--from", help="a backup made by `epr-gateway backup`"),
                    keys_from: Path = typer.Option(..., "--keys-from", help="the key set saved with it (--keys-to)"),
                    data_dir: Path = typer.Option(..., "--data-dir", help="a new, empty data directory"),
                    database_url: Optional[str] = typer.Option(None, help="PostgreSQL: the database pgBackRest "
                                                               "restored")) -> None:
    """A new data directory from a backup and its key set, checksums verified; then run check-restore."""
    from gateway.backup import BackupRefused, restore

    started = time.monotonic()
    try:
        restored = restore(source=source, keys_from=keys_from, data_dir=data_dir, database_url=database_url)
    except BackupRefused as refused:
        typer.echo(f"refused: {refused}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"restored into {data_dir} ({time.monotonic() - started:.1f} s). Next: `. {restored}` and "
               "`epr-gateway check-restore`")


def check_restore_command(expect: Optional[Path] = typer.Option(None, help="the backup's directory (its manifest): "
                                                                 "default the one `restore` left")) -> None:
    """Every document decrypts and is the one stored, every data key unwraps, the ledger verifies against
    the witness, rows per table and the recovery point (equal to the backup's manifest when known)."""
    from gateway.backup import Manifest
    from gateway.restore_check import check_restore

    settings = Settings()
    left = settings.data_dir / "restored-from"
    manifest = Manifest.read(expect) if expect else (Manifest.read(left) if (left / "manifest.json").exists() else None)
    started = time.monotonic()
    result = check_restore(settings, expect=manifest)
    for line in result.lines:
        typer.echo(line)
    if not result.ok:
        for problem in result.problems:
            typer.echo(f"PROBLEM: {problem}", err=True)
        typer.echo(f"RESTORE DOES NOT CHECK OUT ({len(result.problems)} problems)", err=True)
        raise typer.Exit(1)
    typer.echo(f"restore checks out ({time.monotonic() - started:.1f} s)"
               + ("; as the backup's manifest says" if manifest else ""))


def register(app: typer.Typer) -> None:
    app.command("backup")(backup_command)
    app.command("restore")(restore_command)
    app.command("check-restore")(check_restore_command)
