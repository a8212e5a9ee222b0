"""`epr-gateway deliver` and `epr-gateway outbox status|show|retry`: delivering into the communities
(registered by gateway/cli.py; part of the composition root, since they build the parts). Every
command builds the same runtime as the server (same EPR_* settings, the communities file checked at
start) and acts through the delivery use-case."""

from __future__ import annotations

import json
import logging
import signal
import threading
from datetime import datetime
from typing import Optional

import typer

outbox_app = typer.Typer(help="The community outbox: what is delivered, waits or failed, per community.",
                         no_args_is_help=True)


def _runtime():
    from gateway.first_start import prepare
    from gateway.settings import Settings
    from gateway.wiring import build_runtime

    return build_runtime(prepare(Settings()).settings)


def deliver(once: bool = typer.Option(False, "--once", help="deliver what is due now, send the ATNA messages, exit"),
            concurrency: Optional[int] = typer.Option(None, "--concurrency", min=1, max=64,
                                                      help="attempts at once (EPR_DELIVERY_CONCURRENCY)")) -> None:
    """Deliver the outbox into the configured communities (EPR_COMMUNITIES) until stopped (SIGTERM,
    Ctrl-C): beside `serve` (EPR_DELIVERY_IN_SERVE=false) or in several processes on PostgreSQL."""
    from gateway.migration.collector import collector_held_back
    from gateway.wiring import deliverer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    runtime = _runtime()
    running = deliverer(runtime, concurrency=concurrency)
    if running is None:
        typer.echo("epr-gateway deliver: no community is configured (EPR_COMMUNITIES): nothing to deliver", err=True)
        raise typer.Exit(2)
    # A process that only delivers: its start-up's objects frozen out of the cyclic collector and the
    # collector held back, as the migration does (a delivery is a few thousand short-lived objects freed
    # by reference counting; full collections walked the whole process).
    with collector_held_back():
        _deliver(runtime, running, once=once)


def _deliver(runtime, running, *, once: bool) -> None:
    try:
        if once:
            if running.single is not None and not running.single.held():
                typer.echo("epr-gateway deliver --once: another process delivers from this database "
                           f"({running.single.path}); try again when it stops", err=True)
                raise typer.Exit(1)
            recorded = running.run_until_idle()
            typer.echo(f"{recorded} delivery attempts recorded")
            return
        stopping = threading.Event()
        for name in (signal.SIGTERM, signal.SIGINT):
            signal.signal(name, lambda *_: stopping.set())
        running.start()
        typer.echo(f"delivering into {', '.join(runtime.delivery.communities)} "
                   f"({runtime.settings.delivery_mode}); stop with SIGTERM", err=True)
        stopping.wait()
        running.stop()
        typer.echo(f"{running.deliverer.recorded} delivery attempts recorded")
    finally:
        runtime.close()


@outbox_app.command("status")
def status(as_json: bool = typer.Option(False, "--json", help="one JSON object")) -> None:
    """Deliveries per community and state, the age of the oldest one still on its way, ATNA messages queued."""
    from adapters.cara.store.outbox import STATES, utcnow

    runtime = _runtime()
    counts, audit = runtime.delivery.status()
    now = utcnow()
    report = {"mode": runtime.settings.delivery_mode, "communities": [
        {"community": c.community, "states": {s: c.by_state.get(s, 0) for s in STATES},
         "oldest_pending_seconds": _age(now, c.oldest_due), "audit_messages_queued": audit.get(c.community, 0)}
        for c in counts]}
    runtime.close()
    if as_json:
        typer.echo(json.dumps(report, sort_keys=True))
        return
    typer.echo(f"delivery: {report['mode']}" + ("" if counts else "; nothing in the outbox"))
    for community in report["communities"]:
        states = ", ".join(f"{n} {s}" for s, n in community["states"].items() if n)
        oldest = community["oldest_pending_seconds"]
        typer.echo(f"{community['community']}: {states}"
                   + (f"; oldest on its way for {oldest:.0f} s" if oldest is not None else "")
                   + (f"; {community['audit_messages_queued']} ATNA messages queued"
                      if community["audit_messages_queued"] else ""))


@outbox_app.command("show")
def show(unique_id: str = typer.Argument(..., help="the document's uniqueId (urn:oid:… or urn:uuid:…)")) -> None:
    """Every delivery of one document (each community, each kind) and every attempt with its answer."""
    runtime = _runtime()
    found = runtime.delivery.show(unique_id=unique_id)
    runtime.close()
    if not found:
        typer.echo(f"epr-gateway outbox show: no delivery of {unique_id} in the outbox", err=True)
        raise typer.Exit(1)
    for delivery, attempts in found:
        typer.echo(f"{delivery.community} {delivery.kind} (version {delivery.version}): {delivery.state}; "
                   f"submission set {delivery.submission_set_unique_id}, entryUUID {delivery.entry_uuid}, "
                   f"confidentiality {delivery.confidentiality}"
                   + (f", community patient {delivery.community_patient_id}" if delivery.community_patient_id else "")
                   + (f", due {delivery.next_attempt_at:%Y-%m-%d %H:%M:%S}Z" if delivery.state == "pending" else "")
                   + (f", held by {delivery.lease_owner}" if delivery.state == "in-flight" else ""))
        for attempt in attempts:
            said = ": ".join(p for p in (attempt["code"], attempt["text"]) if p)
            typer.echo(f"  #{attempt['attempt']} {attempt['finished_at']:%Y-%m-%d %H:%M:%S}Z {attempt['outcome']} "
                       f"at {attempt['confidentiality']}" + (f" — {said}" if said else ""))


@outbox_app.command("retry")
def retry(unique_ids: list[str] = typer.Argument(None, help="documents (uniqueId) to try again now"),
          failed: bool = typer.Option(False, "--failed", help="every failed (and not-supported) delivery")) -> None:
    """Make deliveries due now (same submission set and ids as before); nothing is sent twice."""
    if not unique_ids and not failed:
        raise typer.BadParameter("name documents (uniqueId) or give --failed", param_hint="UNIQUEID")
    runtime = _runtime()
    count = runtime.delivery.retry(unique_ids=unique_ids or (), failed=failed)
    runtime.close()
    typer.echo(f"{count} deliveries due again")


def _age(now: datetime, since: datetime | None) -> float | None:
    return None if since is None else max(0.0, (now - since).total_seconds())


def register(app: typer.Typer) -> None:
    app.command("deliver")(deliver)
    app.add_typer(outbox_app, name="outbox")
