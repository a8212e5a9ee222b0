"""`CommunityStub`: the cara community as a test meets it — STS, PIX V3 manager, XDS.b repository and
registry behind HTTPS with client certificates, and an ATNA audit record repository."""

from __future__ import annotations

import json
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path

from gateway.pki import server_ssl_context

from .atna import AuditRepository
from .fixtures import require_xds_fixtures, xds_schema
from .https import RecordedRequest, StubHttpServer
from .iti41 import handle_iti41
from .keys import StubKeys, load_certificate, write_keys
from .pix import handle_pix
from .registry import CodeTable, RegistryState, StoredDocument
from .scenarios import Scenarios
from .sts import IssuedAssertion, StsState, TechnicalUser, handle_sts

ITI41_PATH = "/Repository/services/RepositoryService"
STS_PATH = "/STS/services/SecurityTokenService"
PIX_PATH = "/PIXPDQ/services/PIXPDQV3ManagerService"
LEVELS = ("normal", "restricted", "secret")


@dataclass(frozen=True)
class Patient:
    spid: str
    mpi_pid: str
    provide_level: str = "normal"


class CommunityStub:
    """Start with `with CommunityStub(tmp_path, patients=[...]) as stub:`; see README.md."""

    def __init__(self, folder: Path, *, patients: tuple[Patient, ...] | list[Patient] = (),
                 home_community_id: str = "2.16.756.5.30.1.177",
                 assigning_authority: str = "2.16.756.5.30.1.177.2.2.1.1",
                 repository_unique_id: str = "2.16.756.5.30.1.177.2.2.1.1.2",
                 technical_user_oid: str = "2.16.756.5.30.1.191.999.10",
                 principal_gln: str = "7601000000002", principal_name: str = "Muster, Hans",
                 source_id: str = "2.16.756.5.30.1.145.20.1", client_ca: Path | None = None,
                 keep_request_bodies: int | None = None, keep_content: bool = False, atna_strict: bool = True):
        require_xds_fixtures()
        xds_schema()  # load once, before threads race for it
        self.folder = Path(folder)
        self.keys: StubKeys = write_keys(self.folder / "community-stub-pki")
        self.home_community_id, self.source_id = home_community_id, source_id
        self.technical_user_oid, self.principal_gln, self.principal_name = technical_user_oid, principal_gln, principal_name
        self.client_ca = Path(client_ca) if client_ca else self.keys.ca_cert
        self.scenarios = Scenarios()
        self.codes = CodeTable.ch_value_sets()
        self.registry = RegistryState(assigning_authority=assigning_authority,
                                      repository_unique_id=repository_unique_id, codes=self.codes,
                                      keep_content=keep_content)
        self.sts = StsState()
        self._sts_key, self._sts_certificate = self.keys.sts_private_key(), load_certificate(self.keys.sts_cert)
        self.sts.technical_users[technical_user_oid] = TechnicalUser(
            technical_user_oid, load_certificate(self.keys.technical_user_cert), {principal_gln: principal_name})
        self.mpi: dict[str, str] = {}
        self.pix_not_found = "AE"            # or "NF": how the PIX manager says "unknown patient"
        self.pix_receiver_oid: str | None = None  # None: any receiver device (the faq: a random one answers too)
        self.multipart_answers = True         # False: ITI-41 answers as plain application/soap+xml
        self.keep_request_bodies = keep_request_bodies
        self.requests: list[RecordedRequest] = []
        self._requests_lock = threading.Lock()
        for patient in patients:
            self.add_patient(patient)
        self._server: StubHttpServer | None = None
        self._audit: AuditRepository | None = None
        self._atna_strict = atna_strict
        self._threads: list[threading.Thread] = []

    # -- configuration -------------------------------------------------------------------------
    def add_patient(self, patient: Patient) -> None:
        self.mpi[patient.spid] = patient.mpi_pid
        self.registry.known_patients.add(patient.mpi_pid)
        self.set_provide_level(patient.mpi_pid, patient.provide_level)

    def set_provide_level(self, mpi_pid: str, level: str) -> None:
        if level not in LEVELS:
            raise ValueError(f"provide level must be one of {LEVELS}")
        self.registry.provide_levels[mpi_pid] = level

    @property
    def consent_error(self) -> str:
        return self.registry.consent_error

    @consent_error.setter
    def consent_error(self, value: str) -> None:
        if value not in ("emedo", "former"):
            raise ValueError("consent_error is 'emedo' (XDSRepositoryError) or 'former' (XDSRegistryError)")
        self.registry.consent_error = value

    # -- life cycle ----------------------------------------------------------------------------
    def start(self) -> CommunityStub:
        context = server_ssl_context(self.keys.server_cert, self.keys.server_key, client_ca=self.client_ca,
                                     require_client_cert=True)
        routes = {ITI41_PATH: ("iti41", self._iti41), STS_PATH: ("sts", self._sts), PIX_PATH: ("pix", self._pix)}
        self._server = StubHttpServer(context, routes, self.scenarios, self._record)
        self._audit = AuditRepository(context, strict=self._atna_strict)
        for server in (self._server, self._audit):
            thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
            thread.start()
            self._threads.append(thread)
        self._audit_thread = self._threads[-1]
        return self

    def stop(self) -> None:
        for server in (self._server, self._audit):
            if server is not None:
                server.shutdown()
                if isinstance(server, StubHttpServer):
                    server.close_connections()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()

    def stop_audit(self) -> None:
        """The audit record repository goes down (its port refuses connections) until `start_audit`."""
        server, thread = self._audit, self._audit_thread
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    def start_audit(self) -> None:
        """The repository back on the same port, with what it had received before."""
        old = self._audit
        context = server_ssl_context(self.keys.server_cert, self.keys.server_key, client_ca=self.client_ca,
                                     require_client_cert=True)
        new = AuditRepository(context, strict=self._atna_strict, port=old.server_address[1])
        new.messages, new.rejected, new.handshake_failures = old.messages, old.rejected, old.handshake_failures
        self._audit = new
        self._audit_thread = threading.Thread(target=new.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._audit_thread.start()
        self._threads.append(self._audit_thread)

    def __enter__(self) -> CommunityStub:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- where it listens, and the gateway's configuration of it --------------------------------
    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    @property
    def iti41_url(self) -> str:
        return self.base_url + ITI41_PATH

    @property
    def sts_url(self) -> str:
        return self.base_url + STS_PATH

    @property
    def pix_url(self) -> str:
        return self.base_url + PIX_PATH

    @property
    def atna_address(self) -> str:
        return self._audit.address

    def community_config(self, community_id: str = "cara") -> dict:
        """One community in the format of issue 24 item 6, pointing at this stub."""
        return {
            "id": community_id, "home_community_id": f"urn:oid:{self.home_community_id}",  # as item 6 writes it
            "repository_unique_id": self.registry.repository_unique_id, "iti41_url": self.iti41_url,
            "iti40_sts_url": self.sts_url, "iti45_pix_url": self.pix_url,
            "pix_assigning_authority": self.registry.assigning_authority, "atna_address": self.atna_address,
            "tls": {"ca": str(self.keys.ca_cert), "client_cert": str(self.keys.source_cert),
                    "client_key": str(self.keys.source_key)},
            "technical_user": {"oid": self.technical_user_oid, "key": str(self.keys.technical_user_key),
                               "cert": str(self.keys.technical_user_cert), "principal_gln": self.principal_gln,
                               "principal_name": self.principal_name},
            "source_id": self.source_id,
        }

    def write_communities_file(self, path: Path | None = None, community_id: str = "cara") -> Path:
        """The JSON list `EPR_COMMUNITIES` names, holding this community."""
        path = Path(path) if path else self.folder / "communities.json"
        path.write_text(json.dumps([self.community_config(community_id)], indent=2), encoding="utf-8")
        return path

    # -- what it saw ---------------------------------------------------------------------------
    @property
    def documents(self) -> dict[str, StoredDocument]:
        """Every stored document by uniqueId."""
        return self.registry.documents

    @property
    def stored(self) -> list[StoredDocument]:
        """Every stored document, in the order the registry stored them."""
        return list(self.registry.stored_in_order)

    @property
    def issued_assertions(self) -> list[IssuedAssertion]:
        return list(self.sts.issued_in_order)

    @property
    def audit(self) -> AuditRepository:
        return self._audit

    @property
    def handshake_failures(self) -> list[str]:
        return list(self._server.handshake_failures) + list(self._audit.handshake_failures)

    def requests_to(self, endpoint: str) -> list[RecordedRequest]:
        with self._requests_lock:
            return [r for r in self.requests if r.endpoint == endpoint]

    def counts(self) -> dict[str, int]:
        with self._requests_lock:
            per_endpoint = {e: sum(r.endpoint == e for r in self.requests) for e in ("iti41", "sts", "pix")}
        return {"documents": len(self.registry.documents), "submission_sets": len(self.registry.submission_sets),
                "assertions": len(self.sts.issued), "audit_messages": len(self._audit.messages),
                "audit_rejected": len(self._audit.rejected), **{f"requests_{k}": v for k, v in per_endpoint.items()}}

    # -- handlers ------------------------------------------------------------------------------
    def _record(self, request: RecordedRequest) -> None:
        with self._requests_lock:
            self.requests.append(request)
            if self.keep_request_bodies is not None:
                kept = [r for r in self.requests if r.body is not None]
                for old in kept[:max(0, len(kept) - self.keep_request_bodies)]:
                    old.body = None

    def _iti41(self, content_type, body):
        provided = handle_iti41(content_type, body, registry=self.registry, sts=self.sts, mpi=self.mpi,
                                multipart_answers=self.multipart_answers)
        return provided.answer, "stored " + ", ".join(d.unique_id for d in provided.stored)

    def _sts(self, content_type, body):
        answer, issued = handle_sts(body, state=self.sts, known_spids=set(self.mpi), sts_key=self._sts_key,
                                    sts_certificate=self._sts_certificate,
                                    home_community_id=self.home_community_id)
        return answer, f"issued {issued.assertion_id} for {issued.spid}"

    def _pix(self, content_type, body):
        answer, mpi_pid = handle_pix(body, mpi=self.mpi, assigning_authority=self.registry.assigning_authority,
                                     not_found=self.pix_not_found, receiver_oid=self.pix_receiver_oid)
        return answer, f"found {mpi_pid}" if mpi_pid else f"not found ({self.pix_not_found})"
