"""`epr-gateway migrate …` and `epr-gateway infomed …`: the migration's commands (registered by
gateway/cli.py; part of the composition root, since they build the parts). Every command builds the
same services as the server (same EPR_* settings) and acts through the use-case layer; none of them
opens the record's tables itself (the migration's journal is the migration face's own table)."""

from __future__ import annotations

import json
import logging
import sys
from functools import partial
from pathlib import Path
from typing import Optional

import typer

infomed_app = typer.Typer(help="The Infomed platform's exports: a synthetic one, and its patient feed.",
                          no_args_is_help=True)
SUBCOMMANDS = ("status", "retry", "verify")


def _runtime():
    from gateway.first_start import prepare
    from gateway.settings import Settings
    from gateway.wiring import build_runtime

    return build_runtime(prepare(Settings()).settings)


def acting_principal(as_gln: str | None):  # also `epr-gateway held --release --as-gln`
    from gateway.auth.identifiers import gln_is_valid
    from gateway.migration.job import migration_principal

    if not as_gln or not gln_is_valid(as_gln):
        raise typer.BadParameter("the responsible professional's GLN (13 digits, valid check digit)",
                                 param_hint="--as-gln")
    return migration_principal(as_gln)


def migrate(sources: list[str] = typer.Argument(..., help="XDM media (directories or ZIP files); or: status | "
                                                          "retry | verify SOURCE…"),
            as_gln: Optional[str] = typer.Option(None, "--as-gln", help="GLN of the responsible professional"),
            report: Optional[Path] = typer.Option(None, "--report", help="write the reconciliation report (JSON)"),
            workers: int = typer.Option(2, "--workers", min=0,
                                         help="processes reading and mapping the media for the one writer "
                                              "(SQLite; 0: in this process); on PostgreSQL writer processes, each "
                                              "reading and storing its share"),
            batch: int = typer.Option(200, "--batch", min=1, help="documents per transaction"),
            dry_run: bool = typer.Option(False, "--dry-run", help="read, validate and report; store nothing"),
            code_table: list[Path] = typer.Option([], "--code-table", help="extra code table (JSON), repeatable"),
            progress: Optional[bool] = typer.Option(None, "--progress/--no-progress",
                                                    help="progress bar (default: when on a terminal)")) -> None:
    """Migrate XDM exports into the shared record as a technical user acting for --as-gln.

    `migrate status` lists held documents and why; `migrate retry --as-gln GLN` processes them again;
    `migrate verify SOURCE… --as-gln GLN` compares every migrated document's bytes with the source."""
    from adapters.infomed.xdm.codes import CodeTables, CodeTableError

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    command, rest = (sources[0], sources[1:]) if sources[0] in SUBCOMMANDS else (None, sources)
    try:
        tables = CodeTables.load(code_table)
    except CodeTableError as exc:
        raise typer.BadParameter(str(exc), param_hint="--code-table") from exc
    if command == "status":
        return show_status()
    principal = acting_principal(as_gln)
    paths = [Path(s) for s in rest]
    if command in (None, "verify") and not paths:
        raise typer.BadParameter("at least one XDM source", param_hint="SOURCE")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:  # refused before anything is journaled: a mistyped path is not a rejected export
        raise typer.BadParameter(f"no such file or directory: {', '.join(missing)}", param_hint="SOURCE")
    if command == "verify":
        return _verify(paths, principal)
    run_migration(paths, principal, tables, retry=command == "retry", report_file=report, workers=workers,
                  batch=batch, dry_run=dry_run, show=sys.stderr.isatty() if progress is None else progress)


def run_migration(paths, principal, tables, *, retry: bool, report_file, workers, batch, dry_run,
                  show) -> None:  # also `epr-gateway held --release` (retry=True, no paths)
    from gateway.exchanges.imports import ImportExchange
    from gateway.exchanges.failures import DEPENDENCY_FAILURES, is_dependency_failure
    from gateway.migration.job import MigrationJob
    from gateway.migration.journal import Journal
    from gateway.migration.reading import ReaderFailed, described
    from gateway.migration.progress import MigrationProgress, estimate_documents
    from gateway.migration.report import build_report, retried, summary, this_run
    from gateway.migration.writers import WriterFailed, run_in_writers, writer_processes
    from gateway.wiring import background_checkpoints

    runtime = _runtime()
    services = runtime.services
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    view = MigrationProgress(len(journal.held_summary()) if retry else estimate_documents(paths)) if show else None
    job = MigrationJob(exchange=services.exchange, imports=ImportExchange(exchange=services.exchange, dry_run=dry_run),
                       journal=journal, tables=tables, principal=principal, batch=batch, workers=workers,
                       dry_run=dry_run, on_progress=view.update if view else None)
    if view:
        view.__enter__()
    try:
        with background_checkpoints(runtime):
            if retry:
                media = {source.split("/", 1)[0] for source, _, _ in journal.held_summary()}
                job.retry()
            else:
                media = {p.name for p in paths}
                writers = 1 if dry_run else writer_processes(dialect=runtime.engine.dialect.name, workers=workers)
                if writers > 1:
                    run_in_writers(job, paths, writers=writers, parts=partial(writer_parts, runtime.settings))
                else:
                    job.run(paths)
    except Exception as error:  # a dependency (the job raises nothing else) or a reader/writer process stopped it
        if not isinstance(error, (*DEPENDENCY_FAILURES, ReaderFailed, WriterFailed)) \
                and not is_dependency_failure(error):
            raise
        what = ("a reader process" if isinstance(error, ReaderFailed) else
                "a writer process" if isinstance(error, WriterFailed) else "the database, ledger or cache")
        typer.echo(f"epr-gateway migrate: stopped, {what} failed ({described(error)}); every batch "
                   "committed before is journaled: run the same command again to continue", err=True)
        raise typer.Exit(1) from None
    finally:
        if view:
            view.__exit__(None, None, None)
    rows = list(job.dry_rows if dry_run else journal.rows_for(media).values())
    delivery = None  # where each migrated document stands in its delivery to the communities
    if runtime.delivery.communities and not dry_run:
        delivery = runtime.delivery.states(unique_ids=[r.unique_id for r in rows if r.unique_id])
    result = build_report(rows, code_tables=tables.version, dry_run=dry_run, delivery=delivery)
    if report_file:
        report_file.write_text(json.dumps(result, indent=1, ensure_ascii=False), encoding="utf-8")
    if retry:  # what was retried, not the totals of every media that had a held document
        typer.echo(retried(job.counts))
    elif job.counts.skipped:  # a rerun or a resumed run: what it did, then where the media stand
        typer.echo(this_run(job.counts))
        typer.echo("these media, this run and earlier ones: " + summary(result))
    else:
        typer.echo(summary(result))


def writer_parts(settings):
    """In a writer process of `migrate --workers N` on PostgreSQL: its own engine, keys and ledger, built
    as the server builds them (`writers.py`)."""
    from gateway.exchanges.imports import ImportExchange
    from gateway.migration.journal import Journal
    from gateway.wiring import build_runtime

    runtime = build_runtime(settings)
    exchange = runtime.services.exchange
    return exchange, ImportExchange(exchange=exchange), Journal(engine=runtime.engine, keyring=runtime.keyring)


def show_status() -> None:
    from gateway.migration.journal import Journal
    from gateway.migration.report import delivery_counts, delivery_lines

    runtime = _runtime()
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    held = journal.held_summary()
    by_reason: dict[str, int] = {}
    for _, code, _ in held:
        by_reason[code] = by_reason.get(code, 0) + 1
    typer.echo(f"{len(held)} documents held" + (": " + ", ".join(f"{n} {c}" for c, n in sorted(by_reason.items()))
                                                 if held else ""))
    for source, code, reason in held:
        typer.echo(f"  {source}\t{code}\t{reason}")
    if not runtime.delivery.communities:
        return
    in_record = journal.in_the_record()
    states = runtime.delivery.states(unique_ids=[unique_id for _, unique_id in in_record])
    typer.echo(f"{len(in_record)} migrated documents in the record; their delivery:")
    for line in delivery_lines(delivery_counts(states.get(unique_id, {}) for _, unique_id in in_record)):
        typer.echo(line)
    for source, unique_id in in_record:  # each one an operator must look at (`outbox show UNIQUEID`)
        for community, state in sorted(states.get(unique_id, {}).items()):
            if state in ("failed", "not-supported"):
                typer.echo(f"  {source}\t{unique_id}\t{community}: {state}")


def _verify(paths, principal) -> None:
    from adapters.infomed.xdm import ebrim
    from adapters.infomed.xdm.media import MemberRefused, Package, open_media
    from gateway.exchanges.imports import ImportExchange
    from gateway.migration.journal import Journal, storable_source

    runtime = _runtime()
    journal = Journal(engine=runtime.engine, keyring=runtime.keyring)
    rows = journal.rows_for(p.name for p in paths)
    imports = ImportExchange(exchange=runtime.services.exchange)
    checked = 0
    for path in paths:
        for item in open_media(path):
            if not isinstance(item, Package):
                continue
            try:
                metadata = ebrim.parse_metadata(item.metadata)
            except ebrim.MetadataRefused:
                continue
            for document in metadata.documents:
                row = rows.get(storable_source(f"{item.source}/{document.slot('URI') or document.id}"))
                if row is None or row.outcome not in ("migrated", "already_present"):
                    continue
                try:
                    content = item.read(document.slot("URI") or "")
                except MemberRefused as exc:
                    typer.echo(f"VERIFY FAILED at {row.source}: {exc}", err=True)
                    raise typer.Exit(1) from exc
                difference = imports.compare_content(principal=principal, unique_id=row.unique_id, content=content)
                if difference:
                    typer.echo(f"VERIFY FAILED at {row.source}: {difference}", err=True)
                    raise typer.Exit(1)
                checked += 1
    typer.echo(f"verified: {checked} migrated documents are in the record byte for byte")


@infomed_app.command("generate")
def generate(out: Path = typer.Option(..., "--out", help="directory to write: new, empty, or written by generate "
                                                          "before (then replaced)"),
             documents: int = typer.Option(..., "--documents", min=1),
             patients: int = typer.Option(..., "--patients", min=2),
             seed: int = typer.Option(1, "--seed"),
             as_zip: bool = typer.Option(False, "--zip", help="ZIP files instead of directories"),
             quirks: float = typer.Option(0.0, "--quirks", min=0.0, max=1.0,
                                          help="share of subsets/documents carrying a real export's quirks"),
             force: bool = typer.Option(False, "--force", help="replace --out even if generate did not write it")) -> None:
    """Write a synthetic Infomed export: XDM media, patients.ndjson (ITI-104) and manifest.json."""
    from adapters.infomed.generate.export import OutputInUse, generate as write_export

    try:
        made = write_export(out=out, documents=documents, patients=patients, seed=seed, as_zip=as_zip, quirks=quirks,
                            force=force)
    except OutputInUse as refused:
        raise typer.BadParameter(str(refused), param_hint="--out") from None
    typer.echo(f"{made.documents} documents ({made.total_bytes / 1e6:,.1f} MB) in {len(made.media)} media; "
               f"feed {made.patients_file}; manifest {made.manifest_file}")


@infomed_app.command("feed")
def feed(file: Path = typer.Argument(..., help="patients.ndjson: one ITI-104 Patient per line"),
         onboard: bool = typer.Option(True, "--onboard/--no-onboard",
                                      help="open the EPR (onboarding 201/202/203) of each patient with a SPID")) -> None:
    """Feed the export's patients through ITI-104 (as the migration's technical user)."""
    from gateway.migration.feed import feed_patients

    counts = feed_patients(_runtime().services, file, onboard=onboard)
    typer.echo(", ".join(f"{n} {what}" for what, n in counts.items()))


def register(app: typer.Typer) -> None:
    app.command("migrate")(migrate)
    app.add_typer(infomed_app, name="infomed")
