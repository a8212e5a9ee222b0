"""`epr-gateway keys …`: rotating the key-encryption keys while the gateway serves (part of the root).

    keys add            a new key, decrypt-only for now (last in the keyring file)
    keys promote ID     once every live worker (every node) holds it: it wraps new data keys
    keys rewrap         once every live worker wraps under it: re-wrap the stored data keys, in batches
    keys retire ID      once no stored data key names it and no worker wraps under it: removed
    keys status         the keyring, what each live worker holds, the rewrap backlog
    keys rotate         add + promote + rewrap in one go (the old key stays, decrypt-only, until retired)

The workers' reports are `adapters/cara/store/key_holders.py` (every EPR_KEY_HEARTBEAT_SECONDS). A step
that must wait for them refuses (exit 1, naming who lags) unless `--wait` gives it time.
"""

from __future__ import annotations

import time

import typer

from gateway.settings import Settings

keys_app = typer.Typer(help="Key-encryption keys of the record: add, promote, rewrap, retire (while serving).",
                       no_args_is_help=True)


class _Keys:
    def __init__(self) -> None:
        from adapters.cara.store.database import make_engine, migrate
        from adapters.cara.store.key_holders import KeyHolders

        self.settings = Settings()
        self.path = self.settings.keyring_path
        self.engine = make_engine(self.settings.resolved_database_url)
        migrate(self.engine)
        self.holders = KeyHolders(engine=self.engine)

    def keyring(self):
        from adapters.cara.crypto import Keyring

        return Keyring.load(self.path)

    def live(self):
        return self.holders.live(stale_after=3 * self.settings.key_heartbeat_seconds)

    def wait_for(self, lagging, what: str, wait: float) -> None:
        """Until no live holder lags (`lagging(holder)`), at most `wait` seconds; else exit 1 naming them."""
        deadline = time.monotonic() + wait
        while True:
            behind = [h for h in self.live() if lagging(h)]
            if not behind:
                return
            if time.monotonic() >= deadline:
                names = "; ".join(f"{h.holder} holds {','.join(h.key_ids)}" for h in behind)
                typer.echo(f"refused: {len(behind)} worker(s) {what}: {names} (distribute the keyring file to "
                           "every node; workers re-read it within EPR_KEY_HEARTBEAT_SECONDS; or pass --wait)", err=True)
                raise typer.Exit(1)
            time.sleep(min(0.5, self.settings.key_heartbeat_seconds / 2))


@keys_app.command("add")
def add() -> None:
    """Add a new key to the keyring file, decrypt-only: every worker can unwrap with it before it is promoted."""
    from adapters.cara.crypto import Keyring

    settings = Settings()
    key_id = Keyring.add_key_to_file(settings.keyring_path, active=False)
    typer.echo(f"added {key_id} (decrypt-only). Next: distribute the keyring file to every node, then "
               f"`epr-gateway keys promote {key_id}` (it waits for every worker to hold it).")


@keys_app.command("promote")
def promote(key_id: str = typer.Argument(None, help="default: the key added last"),
            wait: float = typer.Option(0.0, help="seconds to wait for every worker to hold it")) -> None:
    """Make a key active (new data keys are wrapped under it) once every live worker holds it."""
    from adapters.cara.crypto import Keyring

    keys = _Keys()
    key_id = key_id or keys.keyring().key_ids[-1]
    if key_id not in keys.keyring().key_ids:
        raise typer.BadParameter(f"{key_id} is not in the keyring file {keys.path}", param_hint="KEY_ID")
    keys.wait_for(lambda holder: key_id not in holder.key_ids, f"do not hold {key_id} yet", wait)
    Keyring.promote_in_file(keys.path, key_id)
    typer.echo(f"active key {key_id}; every live worker held it. Next: `epr-gateway keys rewrap`.")


@keys_app.command("rewrap")
def rewrap(batch: int = typer.Option(500, min=1, help="rows per transaction"),
           pause: float = typer.Option(0.0, min=0.0, help="seconds between batches (room for the requests)"),
           wait: float = typer.Option(30.0, help="seconds to wait for every worker to wrap under the active key")) -> None:
    """Re-wrap every stored data key under the active key, in batches (resumable: run it again)."""
    from adapters.cara.store.key_rotation import rewrap as rewrap_rows, rows_not_under

    keys = _Keys()
    active = keys.keyring().active_key_id
    # A worker still wrapping under the old key would add to the backlog behind the rewrap.
    keys.wait_for(lambda holder: holder.active != active, f"do not wrap under {active} yet", wait)
    report = rewrap_rows(engine=keys.engine, keyring=keys.keyring(), batch=batch, pause_seconds=pause)
    backlog = rows_not_under(engine=keys.engine, key_id=active)
    done = ", ".join(f"{n} {t}" for t, n in report.rewrapped.items() if n) or "nothing"
    typer.echo(f"re-wrapped under {active}: {done}; sealed again meanwhile: {report.changed_meanwhile}; "
               f"backlog {sum(backlog.values())}")
    if sum(backlog.values()):
        typer.echo("rows are still under another key: run `epr-gateway keys rewrap` again", err=True)
        raise typer.Exit(1)


@keys_app.command("retire")
def retire(key_id: str = typer.Argument(...),
           wait: float = typer.Option(0.0, help="seconds to wait for every worker to stop wrapping under it")) -> None:
    """Remove a key from the keyring file once no stored data key names it and no worker wraps under it."""
    from adapters.cara.crypto import Keyring, KeyringError
    from adapters.cara.store.key_rotation import rows_under

    keys = _Keys()
    keys.wait_for(lambda holder: holder.active == key_id, f"still wrap under {key_id}", wait)
    left = {table: n for table, n in rows_under(engine=keys.engine, key_id=key_id).items() if n}
    if left:
        typer.echo(f"refused: data keys are still wrapped under {key_id} ("
                   + ", ".join(f"{n} {t}" for t, n in left.items()) + "): run `epr-gateway keys rewrap`", err=True)
        raise typer.Exit(1)
    try:
        Keyring.retire_from_file(keys.path, key_id)
    except KeyringError as refused:
        typer.echo(f"refused: {refused}", err=True)
        raise typer.Exit(1) from None
    typer.echo(f"retired {key_id}. Backups taken before its data keys were re-wrapped restore with the key set "
               "saved beside them (`backup --keys-to`).")


@keys_app.command("status")
def status() -> None:
    """The keyring (active first), what each live worker holds, and the rewrap backlog per table."""
    from adapters.cara.store.key_rotation import rows_not_under

    keys = _Keys()
    ring = keys.keyring()
    typer.echo(f"keyring {keys.path}: active {ring.active_key_id}; decrypt-only {', '.join(ring.key_ids[1:]) or '-'}")
    for holder in keys.live():
        typer.echo(f"worker {holder.holder}: active {holder.active}; holds {', '.join(holder.key_ids)}; "
                   f"seen {holder.seen_at:%H:%M:%S}")
    backlog = rows_not_under(engine=keys.engine, key_id=ring.active_key_id)
    typer.echo(f"backlog {sum(backlog.values())}" + "".join(f"; {n} {t}" for t, n in backlog.items() if n))


@keys_app.command("rotate")
def rotate(wait: float = typer.Option(60.0, help="seconds to wait for the workers at each step")) -> None:
    """`keys add`, `promote` and `rewrap` in one go: a new active key, every data key re-wrapped under it.
    The old key stays in the keyring (decrypt-only) until `keys retire`."""
    from adapters.cara.crypto import Keyring

    settings = Settings()
    key_id = Keyring.add_key_to_file(settings.keyring_path, active=False)
    typer.echo(f"added {key_id}")
    promote(key_id=key_id, wait=wait)
    rewrap(batch=500, pause=0.0, wait=wait)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")
