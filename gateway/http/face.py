"""What the FHIR face keeps beside the use-cases: its settings, its door, its own counters.

The composition root builds it (`gateway/wiring.py`) and the app keeps it as `app.state.http`; the
use-cases are `app.state.services`. The face knows two facts about the store without touching it:
whether the store runs in this process (reads then run on the event loop, `routes.common.run_use_case`)
and how to ask whether the gateway's dependencies answer (the readiness probe, `gateway/readiness.py`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.auth.iua import TokenVerifier
from gateway.auth.token_endpoint import ClientCredentialsGrant
from gateway.exchanges.refusal_windows import RefusalWindows
from gateway.settings import Settings


@dataclass
class HttpFace:
    settings: Settings
    verifier: TokenVerifier  # the door: IUA token → Principal (`security.authenticate`)
    inline_reads: bool  # the store is in-process (SQLite): reads run on the event loop
    readiness: Callable[[], dict[str, str]]  # /health/ready: {dependency: "up" | "down"}
    refusals: RefusalWindows = field(default_factory=RefusalWindows)  # refused authentications per address
    token_grant: ClientCredentialsGrant | None = None  # DEVELOPMENT token endpoint; None: not served (production)

    @classmethod
    def from_settings(cls, settings: Settings, *, verifier: TokenVerifier, inline_reads: bool,
                      readiness: Callable[[], dict[str, str]],
                      token_grant: ClientCredentialsGrant | None = None) -> HttpFace:
        refusals = RefusalWindows(interval_seconds=settings.auth_failure_interval_seconds,
                                  limit=settings.auth_failure_limit, max_sources=settings.auth_failure_sources)
        return cls(settings=settings, verifier=verifier, inline_reads=inline_reads, readiness=readiness,
                   refusals=refusals, token_grant=token_grant)
