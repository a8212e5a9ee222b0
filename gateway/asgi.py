"""ASGI entry for uvicorn workers: `uvicorn --factory gateway.asgi:create` (settings from EPR_*)."""

from __future__ import annotations

import logging
import sys

import pydantic
from fastapi import FastAPI

from adapters.community.config import CommunityConfigError
from gateway.composition import create_app
from gateway.first_start import ProductionMisconfigured, prepare
from gateway.log_format import configure_logging, lean_records
from gateway.settings import Settings, settings_problem
from gateway.wiring import build_runtime

# With PostgreSQL the event loop shares the GIL with the audit writer thread, whose commit every
# read's answer waits for; CPython lets a waiting thread in only every switch interval (5 ms by
# default). 1 ms lets it in sooner (bench/README.md).
GIL_SWITCH_INTERVAL_SECONDS = 0.001


def create() -> FastAPI:
    sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
    # Worker processes are spawned: they configure logging themselves (no-op when already done).
    if not logging.getLogger().handlers:
        configure_logging()
    lean_records()  # uvicorn configured the handlers from LOG_CONFIG: the records' switches still apply
    try:
        settings = prepare(Settings()).settings
    except pydantic.ValidationError as invalid:  # fail closed, in one line, as `epr-gateway` does
        print(f"epr-gateway worker: {settings_problem(invalid)}", file=sys.stderr)
        raise SystemExit(2) from None
    except ProductionMisconfigured as misconfigured:
        print(f"epr-gateway worker: {misconfigured}", file=sys.stderr)
        raise SystemExit(2) from None
    try:
        runtime = build_runtime(settings)
    except CommunityConfigError as misconfigured:
        print(f"epr-gateway worker: {misconfigured}", file=sys.stderr)
        raise SystemExit(2) from None
    return create_app(runtime)
