"""ASGI entry for uvicorn workers: `uvicorn --factory gateway.asgi:create` (settings from EPR_*)."""

from __future__ import annotations

from fastapi import FastAPI

from gateway.app import create_app
from gateway.first_start import prepare
from gateway.settings import Settings
from gateway.wiring import build_services


def create() -> FastAPI:
    return create_app(build_services(prepare(Settings()).settings))
