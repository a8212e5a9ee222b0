"""A gateway delivering into the strict community stub (real mutual TLS on loopback, its STS, PIX
manager, repository and ATNA listener), and what the tests read of both sides."""

from __future__ import annotations

import json
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

from adapters.cara.store.outbox_schema import ON_ITS_WAY, community_delivery, community_delivery_attempt
from audit.ledger import verify_ledger
from community_stub import CommunityStub, Patient
from conftest import SPID, Gateway, running_gateway
from functional.helpers import document_ids
from gateway.samples import new_oid_unique_id, pdf_document, provide_bundle
from gateway.wiring import deliverer

MPI_PID = "100001201"  # the community's id of the test patient (SPID)
INSTITUTION = ("Hôpital du Valais", "2.16.756.5.30.1.178.1")  # authorInstitution with an OID, as cara requires
# Short pauses: a test waits tenths of seconds for a retry, not the production backoff.
FAST = dict(delivery_in_serve=False, delivery_retry_seconds=0.05, delivery_retry_max_seconds=0.2,
            delivery_patient_retry_seconds=0.05, delivery_poll_seconds=0.05, delivery_lease_seconds=5.0)


@dataclass
class World:
    gateway: Gateway
    stub: CommunityStub
    communities_file: Path

    @property
    def runtime(self):
        return self.gateway.runtime

    def provide(self, *documents: dict, spid: str = SPID) -> list[str]:
        """ITI-65 of `documents` (title/content defaulted, an institution with an OID); their entry ids."""
        filled = [{"title": "Letter", "content": pdf_document("Letter", [new_oid_unique_id()]),
                   "author_institution": INSTITUTION, **document} for document in documents]
        response = self.gateway.provide(provide_bundle(spid=spid, documents=filled))
        assert response.status_code == 200, response.text
        return document_ids(response.json())

    def settle(self, *, timeout: float = 30.0, until=None) -> None:
        """Run this process's deliverer until no row is on its way (or `until()` holds)."""
        running = deliverer(self.runtime)
        running.start()
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                if (until() if until else not self.on_its_way()):
                    break
                time.sleep(0.05)
            else:
                raise AssertionError(f"not settled in {timeout} s: {self.rows()}")
        finally:
            running.stop()

    def rows(self) -> list[dict]:
        with self.runtime.engine.connect() as connection:
            return [dict(r) for r in connection.execute(select(community_delivery)
                                                        .order_by(community_delivery.c.id)).mappings()]

    def states(self) -> list[tuple[str, str, str]]:
        """(community, kind, state) of every row, in order."""
        return [(r["community"], r["kind"], r["state"]) for r in self.rows()]

    def on_its_way(self) -> list[dict]:
        return [r for r in self.rows() if r["state"] in ON_ITS_WAY]

    def attempts(self, delivery_id: int | None = None) -> list[dict]:
        with self.runtime.engine.connect() as connection:
            query = select(community_delivery_attempt).order_by(community_delivery_attempt.c.delivery_id,
                                                                community_delivery_attempt.c.attempt)
            if delivery_id is not None:
                query = query.where(community_delivery_attempt.c.delivery_id == delivery_id)
            return [dict(r) for r in connection.execute(query).mappings()]

    def outcomes(self, delivery_id: int) -> list[tuple[str, str]]:
        """(outcome, confidentiality) of each attempt of one row."""
        return [(a["outcome"], a["confidentiality"]) for a in self.attempts(delivery_id)]

    def receipt(self, delivery_id: int) -> dict:
        return json.loads(next(r["receipt"] for r in self.rows() if r["id"] == delivery_id))

    def ledger_ok(self) -> bool:
        auditor = self.gateway.services.auditor
        return verify_ledger(engine=self.runtime.engine, public_keys=auditor.ledger.public_keys).ok

    def ledger_deliveries(self) -> list[dict]:
        """The ITI-41 records of the ledger (the gateway as Document Source)."""
        return [event for event in self.gateway.services.auditor.ledger.all_records()
                if "ITI-41" in [c.get("code") for c in event.get("subtype", [])]]


def stub_patient(level: str = "normal", spid: str = SPID, mpi_pid: str = MPI_PID) -> Patient:
    return Patient(spid, mpi_pid, level)


@contextmanager
def delivering_world(tmp_path: Path, database_url: str, *, patients=None, community_ids=("cara",),
                     register: bool = True, config: dict | None = None, **settings):
    """The stub (its patients: the test patient at provide level normal), a communities file naming it
    once per id in `community_ids` (each with `config` added), and a gateway delivering into them (not
    started: `settle`)."""
    with CommunityStub(tmp_path / "stub", patients=patients if patients is not None else [stub_patient()]) as stub:
        config = [{**stub.community_config(community_id), **(config or {})} for community_id in community_ids]
        communities_file = tmp_path / "communities.json"
        communities_file.write_text(json.dumps(config), encoding="utf-8")
        with running_gateway(tmp_path, database_url, communities=communities_file, **{**FAST, **settings}) as gateway:
            if register:
                gateway.register_patient()
            yield World(gateway, stub, communities_file)
