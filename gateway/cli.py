"""`epr-gateway`: serve, bridge, audit, certs, token (keys, backups and the migration in modules of their own).
Operators' commands; every one reads the EPR_* settings."""

from __future__ import annotations

import base64
import errno
import json
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import pydantic
import typer
from typer._click.exceptions import NoArgsIsHelpError, UsageError  # typer 0.29 carries its own click

from gateway.log_format import configure_logging
from gateway.settings import Settings, settings_problem

app = typer.Typer(help="Gateway from the Valais health network into the intercantonal EPR.", no_args_is_help=True)
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command()
def serve(workers: int = typer.Option(None, help="worker processes (default EPR_WORKERS)")) -> None:
    """Start the gateway (HTTPS). The embedded default prepares its development keys and demo data."""
    from adapters.cara.store.database import make_engine, migrate
    from gateway.http import server
    from gateway.delivery_setup import communities_of
    from gateway.first_start import prepare
    from gateway.wiring import build_runtime

    configure_logging()
    prepared = prepare(Settings())
    settings = prepared.settings
    communities_of(settings)  # the communities file checked before anything listens (one line, exit 2)
    migrate(make_engine(settings.resolved_database_url))
    # Listen first: the banner (and its tokens) must not be printed for a gateway that cannot start.
    try:
        listening = server.bind_sockets(settings.host, settings.port, workers=workers or settings.workers)
    except OSError as error:
        typer.echo(f"epr-gateway serve: cannot listen on {settings.host}:{settings.port}: "
                   f"{error.strerror or error}{_listen_hint(error)}", err=True)
        raise typer.Exit(2) from None
    # The metrics listener before anything is recorded (the workers inherit where to record).
    metrics_listener = _start_metrics(settings)
    if not settings.is_production:
        runtime = build_runtime(settings)
        _welcome(prepared, runtime.services)
        runtime.close()
        _write_running_note(settings)
    # HL7 v2 over MLLP beside HTTPS: each worker's app starts the listener (EPR_MLLP_*).
    settings = settings.model_copy(update={"mllp_serve": True})
    typer.echo(f"MLLP (HL7 v2) on {settings.mllp_host}:{settings.mllp_port}{' with TLS' if settings.mllp_tls else ''};"
               f" senders file {settings.mllp_senders}")
    try:
        server.run(settings, workers=workers or settings.workers, sockets=listening)
    finally:
        if not settings.is_production:
            from gateway.running_note import remove_note
            remove_note(os.getpid(), settings.data_dir)
        if metrics_listener is not None:
            metrics_listener.stop()


def _start_metrics(settings: Settings):
    from gateway.metrics_listener import MetricsAddressInvalid, start_metrics, store_sources

    try:
        listener = start_metrics(settings, store_sources(settings))
    except MetricsAddressInvalid as invalid:
        typer.echo(f"epr-gateway serve: {invalid}", err=True)
        raise typer.Exit(2) from None
    if listener is not None:
        typer.echo(f"metrics (Prometheus) on http://{listener.host}:{listener.port}/metrics")
    return listener


def _listen_hint(error: OSError) -> str:
    """The setting to change when the address cannot be listened on (a setting's mistake: exit 2)."""
    if error.errno == errno.EADDRINUSE:
        return " (another program listens there: set EPR_PORT to a free port, e.g. EPR_PORT=8444 make run)"
    if error.errno == errno.EACCES:
        return " (ports below 1024 need privileges: set EPR_PORT to a port above 1023)"
    if error.errno == errno.EADDRNOTAVAIL:
        return " (not an address of this machine: set EPR_HOST)"
    return " (check EPR_HOST and EPR_PORT)"


def _write_running_note(settings: Settings) -> None:
    import time

    from gateway.first_start import dev_issuer_url
    from gateway.running_note import RunningGateway, write_note

    write_note(RunningGateway(pid=os.getpid(), data_dir=str(settings.data_dir.resolve()),
                              issuer_url=dev_issuer_url(settings), audience=settings.audience,
                              base_url=f"https://{settings.host}:{settings.port}/fhir", started=time.time()))


bridge_app = typer.Typer(help="The HL7 v2 bridge: `bridge` runs the MLLP listener alone; `held`, `retry`.",
                         invoke_without_command=True)
app.add_typer(bridge_app, name="bridge")


@bridge_app.callback()
def bridge(ctx: typer.Context, port: int = typer.Option(None, help="MLLP port (default EPR_MLLP_PORT)")) -> None:
    """Start only the HL7 v2 bridge: the MLLP listener (EPR_MLLP_*), no HTTPS."""
    if ctx.invoked_subcommand is not None:
        return
    import asyncio

    from gateway.first_start import prepare
    from gateway.wiring import build_runtime, key_heartbeat, mllp_listener

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = prepare(Settings()).settings
    runtime = build_runtime(settings)
    keys = key_heartbeat(runtime)  # the keys this process holds, for `keys promote|rewrap|retire`
    keys.start()

    async def run() -> None:
        listener = mllp_listener(runtime, port=port)
        host, bound = await listener.start()
        typer.echo(f"MLLP (HL7 v2) on {host}:{bound}{' with TLS' if settings.mllp_tls else ''};"
                   f" senders file {settings.mllp_senders}", err=True)
        try:
            await asyncio.Event().wait()
        finally:
            await listener.stop()
            runtime.ledger.checkpoint()

    try:
        asyncio.run(run())
    except KeyboardInterrupt:
        pass
    finally:
        keys.stop()


@bridge_app.command("held")
def bridge_held(release: bool = typer.Option(False, "--release", help="process them again (as `bridge retry`)"),
                patient: str = typer.Option(None, help="with --release: only this patient's (MPI-PID)")) -> None:
    """List the HL7 v2 messages held until their patient is ready: sender, MSH-10, since when, why, and
    what releases each; with --release, process them again."""
    from gateway.held_cli import list_held_messages, release_held_messages

    release_held_messages(patient) if release else list_held_messages()


@bridge_app.command("retry")
def bridge_retry(patient: str = typer.Option(None, help="only this patient's (MPI-PID) held messages")) -> None:
    """Process the held messages again, each as its sender's technical user (consent decision, storage
    and audit as when it arrived): released, refused, or still held with the reason."""
    from gateway.held_cli import release_held_messages

    release_held_messages(patient)


def _welcome(prepared, services) -> None:
    from gateway.auth.dev_issuer import TRUSTED_ISSUERS_FILE, mint_token
    from gateway.demo import DEMO_GLN, DEMO_SPID, DEMO_VIEWS, load_demo_data
    from gateway.first_start import dev_issuer_url

    settings = prepared.settings
    base = f"https://{settings.host}:{settings.port}/fhir"
    if settings.demo_data and load_demo_data(documents=services.exchange, identities=services.identities,
                                            policies=services.policies, base_url=base):
        typer.echo(f"Loaded demonstration documents for patient {DEMO_SPID}.")
    ca = prepared.pki.ca_cert if prepared.pki else settings.tls_cert
    for line in prepared.generated:
        typer.echo(f"Generated {line}")
    typer.echo(f"""
EPR gateway (embedded default, DEVELOPMENT keys) — FHIR base {base}
  patient's page:  https://{settings.host}:{settings.port}/portal   (development sign-in: demo patient {DEMO_SPID})
  physicians' page: https://{settings.host}:{settings.port}/hcp     (development sign-in: Dr. Demo Favre, GLN {DEMO_GLN})
  data directory:  {settings.data_dir.resolve()}
  development CA:  {Path(ca).resolve()}   (trust it with curl --cacert)""")
    if settings.trusted_issuers != settings.data_dir / "auth" / TRUSTED_ISSUERS_FILE:
        # EPR_TRUSTED_ISSUERS names other issuers (e.g. a second gateway's): tokens come from them, and the
        # development issuer of this data directory (if any) is not trusted here: no example tokens.
        typer.echo(f"  tokens:          from the issuers of EPR_TRUSTED_ISSUERS ({settings.trusted_issuers})\n")
        return
    common = dict(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience)
    hcp = mint_token(role="HCP", gln=DEMO_GLN, name="Dr. Demo Favre", **common)
    pat = mint_token(role="PAT", spid=DEMO_SPID, name="Valérie Demo", **common)
    tcu = mint_token(role="TCU", user_id="infomed-migration", principal_gln=DEMO_GLN, name="Infomed migration",
                     **common)
    typer.echo(f"""  tokens:          epr-gateway token --role HCP --gln {DEMO_GLN} --name "Dr. Demo Favre"
                   (--role PAT --spid …, --role TCU --user-id … --principal-gln …; see --help)
                   or POST {dev_issuer_url(settings)}/token (client credentials, mutual TLS: README)

Example tokens (1 hour):
  HCP ({DEMO_VIEWS["HCP"].says}):
    {hcp}
  PAT ({DEMO_VIEWS["PAT"].says}):
    {pat}
  TCU ({DEMO_VIEWS["TCU"].says}):
    {tcu}

Try:
  curl --cacert {Path(ca).resolve()} -H "Authorization: Bearer {hcp}" \\
    "{base}/DocumentReference?patient.identifier=urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"
""")


@audit_app.command("verify")
def audit_verify(witness: Optional[Path] = typer.Option(None, help="a witness file of signed heads kept elsewhere "
                                                                  "(default: EPR_AUDIT_WITNESS)"),
                 no_witness: bool = typer.Option(False, "--no-witness",
                                                 help="check the database alone (a cut back is then not seen)")) -> None:
    """Recompute the whole ledger, check every checkpoint and the signed head, and compare it with the
    witness of signed heads kept outside the database; exit 1 naming the first problem (or the cut)."""
    from adapters.cara.store.database import make_engine
    from audit.ledger import verify_ledger
    from audit.signing import load_signing_key
    from audit.witness import WitnessUnreadable, read_witness

    settings = Settings()
    key_id, key = load_signing_key(settings.audit_signing_key_path)
    public_keys = {key_id: key.public_key()}
    witnessed, witness_problem = None, None
    if not no_witness:
        path = witness or settings.audit_witness_path
        try:
            reading = read_witness(path, public_keys)
            witnessed = reading.latest
            if reading.bad_lines:
                witness_problem = f"witness {path} line {reading.bad_lines[0]} does not verify (forged or damaged)"
        except WitnessUnreadable as error:
            witness_problem = f"{error} (pass --witness FILE, or --no-witness to check the database alone)"
    report = verify_ledger(engine=make_engine(settings.resolved_database_url), public_keys=public_keys,
                           checkpoint_every=settings.audit_checkpoint_every, witness=witnessed)
    summary = f"{report.records_checked} records, {report.checkpoints_checked} checkpoints"
    if witness_problem and report.ok and report.last_seq == 0:
        witness_problem = None  # nothing recorded yet, so nothing to witness
    problem = report.first_problem or witness_problem
    if problem:
        typer.echo(f"AUDIT LEDGER DOES NOT VERIFY ({summary}): {problem}", err=True)
        raise typer.Exit(1)
    unsigned = f"; {report.unsigned_records} records after the last checkpoint" if report.unsigned_records else ""
    anchored = (f"; signed head at {report.last_seq}" if report.last_seq else "") + (
        f", witness at {witnessed.seq}" if witnessed else "")
    typer.echo(f"audit ledger verifies: {summary}{unsigned}{anchored}")


@audit_app.command("export")
def audit_export(since: Optional[str] = typer.Option(None, help="ISO date or date-time (UTC when no zone)"),
                 format: str = typer.Option("ndjson", help="ndjson (with the proof) or syslog (RFC 5424)")) -> None:
    """Write records with the proof needed to verify them elsewhere (hash chain, signed checkpoint)."""
    from datetime import UTC

    from adapters.cara.store.database import make_engine
    from audit.export import export
    from audit.ledger import DatabaseAuditLedger
    from audit.signing import load_signing_key

    if format not in ("ndjson", "syslog"):
        raise typer.BadParameter("ndjson or syslog", param_hint="--format")
    settings = Settings()
    from adapters.cara.dates import InvalidDate, parse_fhir

    try:  # a date-time without an offset is UTC, as the ledger's times are
        moment = parse_fhir(since, kind="cli").start.replace(tzinfo=UTC) if since else None
    except InvalidDate as refused:
        raise typer.BadParameter(f"{refused.reason} (e.g. 2026-12-01 or 2026-12-01T08:00:00+01:00)",
                                 param_hint="--since") from None
    engine = make_engine(settings.resolved_database_url)
    key_id, key = load_signing_key(settings.audit_signing_key_path)
    # Sign the head first, so that every exported record is covered by a checkpoint.
    DatabaseAuditLedger(engine=engine, signing_key=key, key_id=key_id).checkpoint()
    for line in export(engine=engine, since=moment, fmt=format):
        typer.echo(line)


@app.command()
def certs(client: list[str] = typer.Option([], help="also issue a client certificate with this common name"),
          out: Optional[Path] = typer.Option(None, help="where client certificates go (default: pki dir)")) -> None:
    """Create the development CA, server and client certificates (mutual TLS on loopback)."""
    from gateway.pki import ensure_dev_pki, issue_client_certificate

    settings = Settings()
    _refuse_in_production(settings, "certs")
    pki = ensure_dev_pki(settings.data_dir / "pki")
    typer.echo(f"CA {pki.ca_cert}\nserver {pki.server_cert} {pki.server_key}\nclient {pki.client_cert} {pki.client_key}")
    for name in client:
        cert, key = issue_client_certificate(pki, name, out or settings.data_dir / "pki")
        typer.echo(f"client {name}: {cert} {key}")


@app.command()
def token(role: str = typer.Option(..., help="PAT, REP, HCP, ASS, TCU, DADM or PADM"),
          gln: Optional[str] = typer.Option(None, help="GLN of an HCP or ASS"),
          name: Optional[str] = typer.Option(None, help="subject name"),
          purpose: Optional[str] = typer.Option(None, help="NORM, EMER or AUTO (default: AUTO for TCU, else NORM)"),
          spid: Optional[str] = typer.Option(None, help="patient's EPR-SPID (PAT user id, or extended token)"),
          principal_gln: Optional[str] = typer.Option(None, help="responsible HCP for ASS and TCU"),
          principal_name: Optional[str] = typer.Option(None),
          group: list[str] = typer.Option([], help="group OID (urn:oid:…), repeatable"),
          user_id: Optional[str] = typer.Option(None, help="id for REP, DADM, PADM, TCU"),
          ttl: int = typer.Option(None, help="lifetime in seconds (default 3600, 900 for TCU: the verifier's maxima)")) -> None:
    """Print a token signed by the DEVELOPMENT issuer (never in production). The token is the last line.

    It is minted for a development gateway running on this machine: the one of this shell's
    EPR_DATA_DIR or EPR_PORT when set, else the one of ./var, else the only one running, else the one
    started last (said). With no gateway running there, for the EPR_* settings of this shell."""
    from gateway.auth.dev_issuer import mint_token
    from gateway.auth.errors import AccessRefused, AuthenticationFailed
    from gateway.auth.iua import principal_from_claims
    from gateway.first_start import dev_issuer_url, prepare
    from gateway.running_note import choose

    role = role.upper()
    _check_token_options(role=role, gln=gln, purpose=purpose, spid=spid, principal_gln=principal_gln,
                         user_id=user_id, ttl=ttl)
    settings = Settings()
    _refuse_in_production(settings, "token")
    choice = choose(os.environ)
    running = choice.gateway
    if running is not None:
        data_dir, issuer_url, audience = Path(running.data_dir), running.issuer_url, running.audience
    else:
        settings = prepare(settings).settings
        data_dir, issuer_url, audience = settings.data_dir, dev_issuer_url(settings), settings.audience
    try:
        signed = mint_token(data_dir=data_dir, issuer_url=issuer_url, audience=audience, role=role, gln=gln,
                            name=name, purpose=purpose.upper() if purpose else None, spid=spid,
                            principal_gln=principal_gln, principal_name=principal_name, groups=tuple(group),
                            user_id=user_id, ttl=ttl)
        # The gateway's own claim checks and role rules: refuse here what it would refuse there.
        principal_from_claims(json.loads(base64.urlsafe_b64decode(signed.split(".")[1] + "==")))
    except (ValueError, AuthenticationFailed, AccessRefused) as refused:
        raise UsageError(f"the gateway would refuse this token: {refused}") from None
    where = f"the gateway running at {running.base_url}" if running else f"issuer {issuer_url}"
    typer.echo(f"# DEVELOPMENT token for {role}, valid {ttl or (900 if role == 'TCU' else 3600)} s, for {where}")
    for line in choice.says:
        typer.echo(f"# {line}")
    typer.echo(signed)


def _check_token_options(*, role: str, gln: str | None, purpose: str | None, spid: str | None,
                         principal_gln: str | None, user_id: str | None, ttl: int) -> None:
    """Each mistake named by its option (mint_token itself validates nothing, for tests' sake)."""
    from consent.roles import PATIENT, PROFESSIONALS, ROLES
    from gateway.auth.identifiers import PURPOSES, gln_is_valid, spid_is_well_formed

    if role not in ROLES:
        raise typer.BadParameter(f"{role!r} is not a role; one of {', '.join(sorted(ROLES))}", param_hint="--role")
    if role in PROFESSIONALS and not gln:
        raise UsageError(f"a {role} token needs --gln")
    if role == "PAT" and not spid:
        raise UsageError("a PAT token needs --spid (the patient's EPR-SPID)")
    if role not in PROFESSIONALS | {PATIENT} and not user_id:
        raise UsageError(f"a {role} token needs --user-id")
    for option, value in (("--gln", gln), ("--principal-gln", principal_gln)):
        if value is not None and not gln_is_valid(value):
            raise typer.BadParameter(f"{value!r} is not a GLN (13 digits, GS1 check digit)", param_hint=option)
    if spid is not None and not spid_is_well_formed(spid):
        raise typer.BadParameter(f"{spid!r} is not an EPR-SPID (18 digits)", param_hint="--spid")
    if purpose is not None and purpose.upper() not in PURPOSES:
        raise typer.BadParameter(f"{purpose!r} is not a purpose of use; one of {', '.join(sorted(PURPOSES))}",
                                 param_hint="--purpose")
    ttl = ttl or (900 if role.upper() == "TCU" else 3600)  # the verifier's maximum lifetimes
    if ttl <= 0:
        raise typer.BadParameter(f"{ttl} is not a positive number of seconds", param_hint="--ttl")


def _refuse_in_production(settings: Settings, command: str) -> None:
    if settings.is_production:
        typer.echo(f"refused: '{command}' uses development keys and does not run with EPR_ENV=production", err=True)
        raise typer.Exit(2)


# The migration's commands (`migrate`, `infomed generate|feed`), delivery's (`deliver`, `outbox …`), the keys
# (`keys add|promote|rewrap|retire`), the backups (`backup`, `restore`, `check-restore`) and what is held on
# every path (`held`) are in modules of their own in the root.
from gateway.backup_cli import register as _register_backups  # noqa: E402
from gateway.delivery_cli import register as _register_delivery  # noqa: E402
from gateway.held_cli import register as _register_held  # noqa: E402
from gateway.keys_cli import register as _register_keys  # noqa: E402
from gateway.migration_cli import register as _register_migration  # noqa: E402

_register_migration(app)
_register_delivery(app)
_register_keys(app)
_register_backups(app)
_register_held(app)


def main(argv: list[str] | None = None) -> None:
    """The console entry point. A caller's mistake (an option, a setting) is one line on stderr and
    exit 2, never a traceback; a traceback means a bug."""
    from adapters.community.config import CommunityConfigError
    from gateway.auth.token_endpoint import TokenClientsInvalid
    from gateway.first_start import ProductionMisconfigured

    command = typer.main.get_command(app)
    args = sys.argv[1:] if argv is None else argv
    name = "epr-gateway" + "".join(f" {a}" for a in args[:2] if not a.startswith("-"))
    try:
        code = command.main(args=args, prog_name="epr-gateway", standalone_mode=False)
    except NoArgsIsHelpError as help_asked:
        typer.echo(help_asked.format_message(), err=True)
        code = 2
    except UsageError as mistake:
        typer.echo(f"{name}: {mistake.format_message()} (see --help)", err=True)
        code = mistake.exit_code
    except pydantic.ValidationError as invalid:
        typer.echo(f"{name}: {settings_problem(invalid)}", err=True)
        code = 2
    except (ProductionMisconfigured, CommunityConfigError, TokenClientsInvalid) as misconfigured:
        typer.echo(f"{name}: {misconfigured}", err=True)
        code = 2
    except typer.Abort:
        typer.echo("aborted", err=True)
        code = 1
    sys.exit(code if isinstance(code, int) else 0)

