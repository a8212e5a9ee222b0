"""`epr-gateway held`: what waits until its patient is ready, from every path, and its one release.

The bridge holds HL7 v2 messages and the migration holds XDM documents for the same reasons, by one rule
(`exchanges/patient_readiness.py`); this command lists both and releases both. A held message is
processed again as its sender's technical user, a held migration document as the professional the
migration acts for (`--as-gln`, as `migrate` does): each through provide, with its consent decision and
audit record. The bridge's messages are also released by themselves when the cause is fixed (a feed, an
onboarding, a review resolved); `bridge held|retry` and `migrate status|retry` remain, each for its path.
"""

from __future__ import annotations

from typing import Optional

import typer

RELEASE = "epr-gateway held --release --as-gln <GLN>"


def held(release: bool = typer.Option(False, "--release", help="process everything held again"),
         patient: Optional[str] = typer.Option(None, "--patient",
                                               help="only this patient's (MPI-PID) held HL7 v2 messages"),
         as_gln: Optional[str] = typer.Option(None, "--as-gln",
                                              help="GLN the migration acts for: releases the held migration "
                                                   "documents too")) -> None:
    """List what is held until its patient is ready — HL7 v2 messages and migration documents — with why
    and what releases it; with --release, process it again."""
    from gateway.migration_cli import acting_principal, show_status
    from gateway.settings import Settings

    Settings()  # an unknown EPR_ENV (or any bad setting) refuses before anything is said
    principal = acting_principal(as_gln) if release and as_gln is not None else None
    typer.echo("HL7 v2 bridge:")
    release_held_messages(patient) if release else list_held_messages()
    typer.echo("migration:")
    if not release:
        return show_status()
    if principal is None:
        show_status()
        typer.echo(f"  not released: the migration's documents are processed again as the professional it acts "
                   f"for ({RELEASE})")
        return
    _release_migration(principal)


def _bridge_use_case():
    from gateway.first_start import prepare
    from gateway.settings import Settings
    from gateway.wiring import build_runtime, hl7_exchange

    return hl7_exchange(build_runtime(prepare(Settings()).settings))


def list_held_messages() -> None:
    """The bridge's held messages: id, since when, why, sender, MSH-10, and what releases each."""
    from gateway.exchanges.held_messages import waiting

    held = _bridge_use_case().held_messages()
    typer.echo(f"{len(held)} messages held")
    for message in held:
        typer.echo(f"{message.id}  {message.held_at:%Y-%m-%d %H:%M:%S}  {message.reason:<17} "
                   f"{message.sender}  MSH-10 {message.control_id}\n    {waiting(message)}")


def release_held_messages(patient: str | None) -> None:
    """The bridge's held messages processed again (only `patient`'s, an MPI-PID, when given)."""
    outcomes = _bridge_use_case().release_held(pid=patient)
    counted: dict[str, int] = {}
    for outcome in outcomes:
        counted[outcome.outcome] = counted.get(outcome.outcome, 0) + 1
        typer.echo(f"{outcome.held_id}  {outcome.outcome:<8}  {outcome.sender}  MSH-10 {outcome.control_id}: "
                   f"{outcome.detail}")
    typer.echo(", ".join(f"{n} {o}" for o, n in sorted(counted.items())) or "nothing held")


def _release_migration(principal) -> None:
    from adapters.infomed.xdm.codes import CodeTables
    from gateway.migration_cli import run_migration

    run_migration([], principal, CodeTables.load([]), retry=True, report_file=None, workers=0, batch=200,
                  dry_run=False, show=False)


def register(app: typer.Typer) -> None:
    app.command("held")(held)
