"""ASGI entry for uvicorn workers: `uvicorn --factory gateway.asgi:create` (settings from EPR_*)."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from gateway.app import create_app
from gateway.first_start import prepare
from gateway.settings import Settings
from gateway.wiring import build_services


def create() -> FastAPI:
    # Worker processes are spawned: they configure logging themselves (no-op when already done).
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app(build_services(prepare(Settings()).settings))
