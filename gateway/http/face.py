"""What the FHIR face keeps beside the use-cases: its settings, its door, its own counters.

The composition root builds it (`gateway/wiring.py`) and the app keeps it as `app.state.http`; the
use-cases are `app.state.services`. The face knows two facts about the store without touching it:
whether the store runs in this process (reads then run on the event loop, `routes.common.run_use_case`)
and how to ask whether it answers (the readiness probe).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.auth.iua import TokenVerifier
from gateway.exchanges.refusal_windows import RefusalWindows
from gateway.settings import Settings


@dataclass
class HttpFace:
    settings: Settings
    verifier: TokenVerifier  # the door: IUA token → Principal (`security.authenticate`)
    inline_reads: bool  # the store is in-process (SQLite): reads run on the event loop
    store_ready: Callable[[], bool]  # /health/ready
    refusals: RefusalWindows = field(default_factory=RefusalWindows)  # refused authentications per address

    @classmethod
    def from_settings(cls, settings: Settings, *, verifier: TokenVerifier, inline_reads: bool,
                      store_ready: Callable[[], bool]) -> HttpFace:
        refusals = RefusalWindows(interval_seconds=settings.auth_failure_interval_seconds,
                                limit=settings.auth_failure_limit, max_sources=settings.auth_failure_sources)
        return cls(settings=settings, verifier=verifier, inline_reads=inline_reads, store_ready=store_ready,
                   refusals=refusals)
