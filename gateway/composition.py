"""The application a worker serves: the FHIR face and the patient's page on one origin, and the
background workers that live as long as it does (the lifespan).

Part of the composition root (beside `wiring.py`, which builds the parts): the faces below know
nothing of one another or of what runs beside them.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from contextlib import asynccontextmanager

from fastapi import FastAPI

from gateway import hcp, portal
from gateway.demo import DEMO_GLN, DEMO_INSTITUTION, DEMO_LOCAL_SYSTEM, DEMO_SPID
from gateway.http.app import create_app as create_fhir_app
from gateway.exchanges.refusal_windows import RefusalFlusher
from gateway.http.face import HttpFace
from gateway.readiness import readiness
from gateway.wiring import Runtime, audit_witness, deliverer, key_heartbeat, mllp_listener, siem_shipper


def create_app(runtime: Runtime) -> FastAPI:
    settings, services = runtime.settings, runtime.services
    face = HttpFace.from_settings(settings, verifier=runtime.verifier, inline_reads=runtime.store_in_process,
                                  readiness=readiness(engine=runtime.engine, redis_url=settings.redis_url),
                                  token_grant=runtime.token_grant)

    @asynccontextmanager
    async def lifespan(_app: FastAPI):
        shipper = siem_shipper(settings, runtime.engine)
        witness = audit_witness(settings, runtime.engine, runtime.ledger)
        witness.start()
        keys = key_heartbeat(runtime)  # the keys this worker holds, for `keys promote|rewrap|retire`
        keys.start()
        if shipper is not None:
            shipper.start()
        refusal_flusher = RefusalFlusher(face.refusals, services.auditor)
        refusal_flusher.start()
        bridge = None
        if settings.mllp_serve:  # `epr-gateway serve`: HL7 v2 beside HTTPS (every worker shares the port)
            bridge = mllp_listener(runtime, reuse_port=settings.workers > 1)
            try:
                await bridge.start()
            except OSError as error:  # HTTPS still serves; senders retry until the port is fixed
                logging.getLogger("epr.mllp").error("MLLP listener NOT started on %s:%s: %s",
                                                    settings.mllp_host, settings.mllp_port, error)
                await bridge.stop()
                bridge = None
        # Into the communities (EPR_COMMUNITIES): each worker delivers (on SQLite one at a time).
        delivering = deliverer(runtime) if settings.delivery_in_serve else None
        if delivering is not None:
            delivering.start()
        yield
        if delivering is not None:
            await asyncio.to_thread(delivering.stop)  # attempts in flight recorded, unsent rows given back
        if bridge is not None:
            await bridge.stop()
        await refusal_flusher.stop()  # every counted refusal reaches the ledger before the stop
        if shipper is not None:
            shipper.stop()
        # A clean stop signs the ledger's head, so no record is left outside a signed checkpoint.
        runtime.ledger.checkpoint()
        witness.stop()
        keys.stop()

    # The patient's web page under /portal and the physicians' under /hcp: same use-cases, each its own door.
    patient_page = functools.partial(portal.install, services=services, settings=settings,
                                     directory=runtime.directory, demo_spid=DEMO_SPID)
    demo_professionals = ((DEMO_GLN, "Dr. Demo Favre", DEMO_INSTITUTION),
                          *((p.gln, p.name, p.organisation) for p in runtime.directory.professionals if p.gln != DEMO_GLN))
    professional_page = functools.partial(hcp.install, services=services, settings=settings,
                                          demo_professionals=demo_professionals, demo_local_system=DEMO_LOCAL_SYSTEM)
    return create_fhir_app(services, face, lifespan=lifespan, mounts=[patient_page, professional_page])
