"""`epr-gateway`: serve, keys, certs, token. Operators' commands; every one reads the EPR_* settings."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gateway.log_format import configure_logging
from gateway.settings import Settings

app = typer.Typer(help="Gateway from the Valais health network into the intercantonal EPR.", no_args_is_help=True)
keys_app = typer.Typer(help="Key-encryption keys of the document store.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
audit_app = typer.Typer(help="The tamper-evident audit ledger.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@app.command()
def serve(workers: int = typer.Option(None, help="worker processes (default EPR_WORKERS)")) -> None:
    """Start the gateway (HTTPS). The embedded default prepares its development keys and demo data."""
    from adapters.cara.store.database import make_engine, migrate
    from gateway import server
    from gateway.first_start import prepare
    from gateway.wiring import build_services

    configure_logging()
    prepared = prepare(Settings())
    settings = prepared.settings
    migrate(make_engine(settings.resolved_database_url))
    if not settings.is_production:
        _welcome(prepared, build_services(settings))
    server.run(settings, workers=workers or settings.workers)


def _welcome(prepared, services) -> None:
    from gateway.auth.dev_issuer import mint_token
    from gateway.demo import DEMO_GLN, DEMO_SPID, load_demo_data
    from gateway.first_start import dev_issuer_url

    settings = prepared.settings
    base = f"https://{settings.host}:{settings.port}/fhir"
    if settings.demo_data and load_demo_data(services.exchange, services.policies, base_url=base):
        typer.echo(f"Loaded demonstration documents for patient {DEMO_SPID}.")
    common = dict(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience)
    hcp = mint_token(role="HCP", gln=DEMO_GLN, name="Dr. Demo Favre", **common)
    pat = mint_token(role="PAT", spid=DEMO_SPID, name="Valérie Demo", **common)
    tcu = mint_token(role="TCU", user_id="infomed-migration", principal_gln=DEMO_GLN, name="Infomed migration",
                     **common)
    ca = prepared.pki.ca_cert if prepared.pki else settings.tls_cert
    for line in prepared.generated:
        typer.echo(f"Generated {line}")
    typer.echo(f"""
EPR gateway (embedded default, DEVELOPMENT keys) — FHIR base {base}
  data directory:  {settings.data_dir.resolve()}
  development CA:  {Path(ca).resolve()}   (trust it with curl --cacert)
  tokens:          epr-gateway token --role HCP --gln {DEMO_GLN} --name "Dr. Demo Favre"
                   (--role PAT --spid …, --role TCU --user-id … --principal-gln …; see --help)

Example tokens (1 hour):
  HCP: {hcp}
  PAT: {pat}
  TCU: {tcu}

Try:
  curl --cacert {Path(ca).resolve()} -H "Authorization: Bearer {hcp}" \\
    "{base}/DocumentReference?patient.identifier=urn:oid:2.16.756.5.30.1.127.3.10.3|{DEMO_SPID}"
""")


@keys_app.command("rotate")
def rotate_keys() -> None:
    """Add a new key-encryption key (it becomes active) and re-wrap every data key under it."""
    from adapters.cara.crypto import Keyring
    from adapters.cara.store.database import make_engine, migrate
    from adapters.cara.store.key_rotation import rewrap_data_keys

    settings = Settings()
    new_id = Keyring.add_key_to_file(settings.keyring_path)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    counts = rewrap_data_keys(engine=engine, keyring=Keyring.load(settings.keyring_path))
    typer.echo(f"active key {new_id}; re-wrapped " + ", ".join(f"{n} {t}" for t, n in counts.items()))


@audit_app.command("verify")
def audit_verify() -> None:
    """Recompute the whole ledger and check every checkpoint signature; exit 1 naming the first problem."""
    from adapters.cara.store.database import make_engine
    from audit.ledger import verify_ledger
    from audit.signing import load_signing_key

    settings = Settings()
    key_id, key = load_signing_key(settings.audit_signing_key_path)
    report = verify_ledger(engine=make_engine(settings.resolved_database_url), public_keys={key_id: key.public_key()},
                           checkpoint_every=settings.audit_checkpoint_every)
    summary = f"{report.records_checked} records, {report.checkpoints_checked} checkpoints"
    if not report.ok:
        typer.echo(f"AUDIT LEDGER DOES NOT VERIFY ({summary}): {report.first_problem}", err=True)
        raise typer.Exit(1)
    unsigned = f"; {report.unsigned_records} records after the last checkpoint" if report.unsigned_records else ""
    typer.echo(f"audit ledger verifies: {summary}{unsigned}")


@audit_app.command("export")
def audit_export(since: Optional[str] = typer.Option(None, help="ISO date or date-time (UTC when no zone)"),
                 format: str = typer.Option("ndjson", help="ndjson (with the proof) or syslog (RFC 5424)")) -> None:
    """Write records with the proof needed to verify them elsewhere (hash chain, signed checkpoint)."""
    from datetime import UTC, datetime

    from adapters.cara.store.database import make_engine
    from audit.export import export
    from audit.ledger import DatabaseAuditLedger
    from audit.signing import load_signing_key

    if format not in ("ndjson", "syslog"):
        raise typer.BadParameter("ndjson or syslog", param_hint="--format")
    settings = Settings()
    moment = datetime.fromisoformat(since) if since else None
    if moment is not None and moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
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
          ttl: int = typer.Option(None, help="lifetime in seconds (default 3600, 900 for TCU: the "
                                                "verifier's maximum lifetimes)")) -> None:
    """Print a token signed by the DEVELOPMENT issuer (never in production). The token is the last line."""
    from gateway.auth.dev_issuer import mint_token
    from gateway.first_start import dev_issuer_url, prepare

    settings = Settings()
    _refuse_in_production(settings, "token")
    settings = prepare(settings).settings
    signed = mint_token(data_dir=settings.data_dir, issuer_url=dev_issuer_url(settings), audience=settings.audience,
                        role=role.upper(), gln=gln, name=name, purpose=purpose, spid=spid,
                        principal_gln=principal_gln, principal_name=principal_name, groups=tuple(group),
                        user_id=user_id, ttl=ttl)
    typer.echo(f"# DEVELOPMENT token for {role.upper()}, valid {ttl or (900 if role.upper() == 'TCU' else 3600)} s")
    typer.echo(signed)


def _refuse_in_production(settings: Settings, command: str) -> None:
    if settings.is_production:
        typer.echo(f"refused: '{command}' uses development keys and does not run with EPR_ENV=production", err=True)
        raise typer.Exit(2)
