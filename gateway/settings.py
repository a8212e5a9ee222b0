"""Settings from `EPR_*` environment variables. Defaults are the embedded development set-up."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict


DEFAULT_METRICS_ADDRESS = "127.0.0.1:9464"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EPR_", extra="ignore")

    # Fail closed: only the two known values; `prod`, `Production` or a typo is refused at start (one
    # line, exit 2) instead of running as development with development keys and sign-in.
    env: Literal["development", "production"] = Field(
        "development", description="'production' refuses development keys, the development sign-in and `token`")
    data_dir: Path = Path("var")
    database_url: str | None = None  # default: SQLite file in data_dir
    host: str = "127.0.0.1"
    port: int = 8443
    tls_cert: Path | None = None  # default: development server certificate in data_dir/pki
    tls_key: Path | None = None
    client_ca: Path | None = None  # CA whose client certificates are accepted (mutual TLS)
    require_client_cert: bool = False
    require_mtls_for: str = ""  # comma-separated roles for which a token alone is not enough
    community_oid: str = "2.16.756.5.30.1.999.1"  # the MPI-PID assigning authority (configure!)
    audit_source_oid: str = "2.16.756.5.30.1.999.1.1"
    audit_signing_key: Path | None = None  # Ed25519 PEM; default: a DEVELOPMENT key generated in data_dir/audit
    audit_checkpoint_every: int = 100
    audit_witness: Path | None = None  # append-only file of the latest signed heads; default data_dir/audit
    audit_witness_seconds: float = Field(1.0, gt=0)  # at most one witness line per interval
    keyring: Path | None = None  # default: data_dir/keyring.json, generated on first start
    trusted_issuers: Path | None = None  # default: the development issuer, generated on first start
    # The development issuer's token endpoint (POST /dev-issuer/token, client credentials + mutual TLS):
    # its registered clients; default a DEVELOPMENT file naming the development client certificate.
    # Never used in production (the endpoint is not served there).
    dev_token_clients: Path | None = None
    audience: str = "https://127.0.0.1:8443/fhir"
    clock_skew_seconds: int = 60
    max_token_lifetime_seconds: int = Field(3600, gt=0)  # exp - iat of a user's token (401 beyond)
    max_tcu_token_lifetime_seconds: int = Field(900, gt=0)  # the same for technical users (TCU)
    # Refused authentications per client address (gateway/exchanges/refusal_windows.py): one record per window
    # plus one summary with the count; past the limit, 429 until the window ends.
    auth_failure_interval_seconds: float = Field(10.0, gt=0)
    auth_failure_limit: int = Field(20, ge=1)
    auth_failure_sources: int = Field(10_000, ge=1)  # addresses tracked; past it, one shared bucket
    public_base_url: str | None = None  # the FHIR base as clients see it (required in production)
    max_body_bytes: int = 64 * 1024 * 1024
    workers: int = 1
    redis_url: str | None = None  # production: shared policy cache invalidation across workers
    search_cache_seconds: float = Field(10.0, ge=0)  # how long an ITI-67 page may be reused; 0: never
    siem_address: str | None = None  # host:port of a SIEM / ATNA repository: ship the ledger (syslog over TLS)
    siem_ca: Path | None = None  # CA of the SIEM's certificate (default: the system's)
    siem_client_cert: Path | None = None  # this node's certificate for mutual TLS (ATNA node authentication)
    siem_client_key: Path | None = None
    provide_level_mode: str = Field("raise", pattern="^(raise|reject)$")  # upload below the 203 level
    demo_data: bool = True  # load demonstration documents on first start of the embedded default
    # Budget of client JSON (adapters/cara/client_json.py): refused before it is parsed whole or validated.
    max_metadata_bytes: int = Field(1024 * 1024, ge=1024)  # one request, Binary.data aside (413)
    max_resource_metadata_bytes: int = Field(64 * 1024, ge=1024)  # one resource of a Bundle (413)
    max_json_depth: int = Field(32, ge=8, le=256)  # nesting (422)
    max_json_members: int = Field(20_000, ge=100)  # object members in one request (413)
    # HL7 v2 over MLLP (the bridge): `epr-gateway serve` starts it beside HTTPS, `epr-gateway bridge` alone
    mllp_port: int = 2575
    mllp_host: str = "127.0.0.1"
    mllp_tls: bool = False  # TLS with the gateway's certificate; client certificates from EPR_CLIENT_CA
    mllp_senders: Path | None = None  # the senders file; default: a DEVELOPMENT one naming the demo HCP
    # Worker processes reading and mapping document messages off the listener's GIL (0: in its thread).
    # Off by default: on the shared 2-core machine it measured slower (no core to spare; bench/README.md).
    mllp_map_processes: int = 0
    mllp_serve: bool = False  # set by `epr-gateway serve`: the app's workers also listen for MLLP
    # MLLP limits (gateway/mllp/limits.py); refusals at its door are counted per address with the
    # EPR_AUTH_FAILURE_* interval, limit and address bound (gateway/mllp/door.py).
    mllp_max_frame_bytes: int = Field(32 * 1024 * 1024, ge=1024)  # one message; larger: AE, read unheld
    mllp_max_buffered_bytes: int = Field(128 * 1024 * 1024, ge=1024)  # across connections; past it: AR
    mllp_read_timeout_seconds: float = Field(60.0, gt=0)  # start to end block, TLS handshake, ACK taken
    mllp_idle_timeout_seconds: float = Field(600.0, gt=0)  # between frames, then the connection is closed
    mllp_max_connections: int = Field(256, ge=1)  # and at most half of RLIMIT_NOFILE (HTTPS keeps the rest)
    # -- the patient's web page (/portal) --
    portal_oidc_issuer: str | None = None  # production sign-in: the identity provider (OpenID Connect)
    portal_oidc_client_id: str | None = None
    portal_oidc_client_secret: str | None = None
    portal_oidc_redirect_url: str | None = None  # default: https://<host>/portal/oidc/callback from the request
    portal_oidc_ca: Path | None = None  # CA of the identity provider's certificate (default: the system's)
    portal_oidc_spid_claim: str = "epr_spid"  # ID token claim with the patient's EPR-SPID
    portal_oidc_representative_claim: str = "epr_representative_id"  # claim naming a representative
    portal_oidc_represented_claim: str = "epr_represented_spid"  # the SPID a representative acts for
    portal_session_idle_seconds: int = Field(900, gt=0)  # signed out after 15 minutes without a request
    portal_session_absolute_seconds: int = Field(8 * 3600, gt=0)  # and after 8 hours whatever happens
    portal_directory: Path | None = None  # JSON: professionals and groups a patient may choose from
    # -- delivering into communities (issue 24; README "Delivering into a community") --
    communities: Path | None = None  # the JSON list of communities; absent: no delivery (its own record)
    # off | store-and-forward (default with communities) | forward-only (bytes dropped once delivered)
    delivery: Literal["off", "store-and-forward", "forward-only"] | None = None
    delivery_in_serve: bool = True  # each `serve` worker delivers; false when `epr-gateway deliver` runs apart
    delivery_concurrency: int = Field(8, ge=1, le=64)  # attempts waiting on the community at once, per process
    delivery_lease_seconds: float = Field(120.0, gt=0)  # a claimed row's; longer than one attempt's timeouts
    delivery_poll_seconds: float = Field(0.5, gt=0)  # how often an idle deliverer looks for due rows
    delivery_retry_seconds: float = Field(2.0, gt=0)  # first retry after a transport failure (doubles, jitter)
    delivery_retry_max_seconds: float = Field(600.0, gt=0)
    delivery_patient_retry_seconds: float = Field(60.0, gt=0)  # first retry of a patient the community lacks
    # -- the professionals' web page (/hcp): sessions follow the portal's timeouts --
    hcp_oidc_issuer: str | None = None  # production sign-in: the professionals' identity provider
    hcp_oidc_client_id: str | None = None
    hcp_oidc_client_secret: str | None = None
    hcp_oidc_redirect_url: str | None = None  # default: <public origin>/hcp/oidc/callback
    hcp_oidc_ca: Path | None = None  # CA of the identity provider's certificate (default: the system's)
    hcp_oidc_gln_claim: str = "gln"  # ID token claim with the professional's GLN
    hcp_oidc_role_claim: str = "epr_role"  # HCP, or ASS for an assistant (absent: HCP unless a delegation)
    hcp_oidc_delegation_claim: str = "epr_acting_for"  # an assistant's professional: their GLN
    hcp_oidc_delegation_name_claim: str = "epr_acting_for_name"
    hcp_oidc_organisation_claim: str = "organisation"
    hcp_oidc_organisation_id_claim: str = "organisation_id"  # urn:oid:… of the institution
    hcp_oidc_groups_claim: str = "epr_groups"  # [{"id": "urn:oid:…", "name": …}] (302 grants)
    hcp_oidc_local_id_system_claim: str = "epr_local_id_system"  # urn:oid:… of the institution's patient ids
    # Two-factor authentication: the ID token's `acr` must be one of these, or its `amr` name one of these
    # (comma-separated); with an issuer configured, at least one of the two is required (else no start).
    hcp_oidc_acr: str = ""
    hcp_oidc_amr: str = ""
    hcp_emergency_minutes: int = Field(30, ge=1, le=240)  # how long an emergency access lasts on the page
    hcp_max_upload_bytes: int = Field(20 * 1024 * 1024, ge=1024)  # one PDF uploaded through the page
    hcp_source_id: str = "urn:oid:2.16.756.5.30.1.999.9"  # the page's ITI-65 SubmissionSet sourceId
    cors_origins: str = ""  # comma-separated browser origins allowed to call the FHIR API; default none
    api_docs: bool | None = None  # /openapi.json and /docs; default: on except in production
    # Prometheus metrics on their own listener (gateway/metrics_listener.py): host:port, or "off".
    # Default: 127.0.0.1:9464 in development, off in production unless set.
    metrics_address: str | None = None
    # How often each process reports the key-encryption keys it holds (key rotation under load, keys_cli).
    key_heartbeat_seconds: float = Field(5.0, gt=0)

    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'gateway.sqlite3').resolve()}"

    @property
    def fhir_base_url(self) -> str:
        """The base of every link the gateway writes: configured, else this server's own address —
        never the request's Host header, which the client chooses."""
        if self.public_base_url:
            return self.public_base_url.rstrip("/")
        return f"https://{self.host}:{self.port}/fhir"

    @property
    def public_origin(self) -> str:
        """`scheme://host[:port]` of the public base URL: the origin of the pages, of their redirects and
        OIDC callback, and the only Origin a page's form may come from — never the request's Host."""
        scheme, _, rest = self.fhir_base_url.partition("://")
        return f"{scheme}://{rest.split('/', 1)[0]}"

    @property
    def delivery_mode(self) -> str:
        """off, store-and-forward or forward-only, as configured (store-and-forward when communities are
        given and EPR_DELIVERY is not). Whether it is consistent is checked by `wiring.communities_of`."""
        if self.delivery is not None:
            return self.delivery
        return "store-and-forward" if self.communities else "off"

    @property
    def keyring_path(self) -> Path:
        return self.keyring or self.data_dir / "keyring.json"

    @property
    def audit_signing_key_path(self) -> Path:
        return self.audit_signing_key or self.data_dir / "audit" / "audit-signing-key.DEVELOPMENT.pem"

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.strip() for origin in self.cors_origins.split(",") if origin.strip()]

    @property
    def api_docs_enabled(self) -> bool:
        return (not self.is_production) if self.api_docs is None else self.api_docs

    @property
    def audit_witness_path(self) -> Path:
        return self.audit_witness or self.data_dir / "audit" / "witness.jsonl"

    @property
    def metrics_listen(self) -> str | None:
        """Where the metrics listener listens, or None (off)."""
        if self.metrics_address is None:
            return None if self.is_production else DEFAULT_METRICS_ADDRESS
        return None if self.metrics_address.strip().lower() in ("", "off") else self.metrics_address.strip()

    @property
    def mtls_roles(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.require_mtls_for.split(",") if r.strip())


def settings_problem(invalid: ValidationError) -> str:
    """`EPR_PORT='notaport': Input should be a valid integer, …` — the variable, its value, the rule."""
    problems = []
    for error in invalid.errors()[:3]:
        variable = "EPR_" + "_".join(str(part) for part in error["loc"]).upper()
        problems.append(f"{variable}={error.get('input')!r}: {error['msg']}")
    return "; ".join(problems)
