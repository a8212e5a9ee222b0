"""Routes shared by every app built in a process are named once: a second app must not wrap them again.

The hot MHD reads and the pages' routes are module-level objects; before this rule each app built in the
process stacked one more wrapper on them, and a long test run (or a process that rebuilds its app) ended
every request on those routes in RecursionError."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.testclient import TestClient
from starlette.applications import Starlette

from conftest import running_gateway, sqlite_url
from gateway.http.access_log import name_routes


async def _answer(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.scope["route"].path)


def test_a_route_named_again_keeps_its_one_wrapper():
    route = Route("/things/{id}", _answer)
    name_routes([route])
    named_once = route.handle

    for _ in range(3000):  # more than the recursion limit: stacking would fail the request below
        name_routes([route])

    assert route.handle is named_once
    with TestClient(Starlette(routes=[route])) as client:
        answer = client.get("/things/42")
    assert (answer.status_code, answer.text) == (200, "/things/{id}")


def test_apps_built_one_after_another_share_the_hot_routes_unstacked(tmp_path):
    from gateway.http.routes import mhd

    handles = None
    for name in ("one", "two", "three"):
        (tmp_path / name).mkdir()
        with running_gateway(tmp_path / name, sqlite_url(tmp_path / name)) as gateway:
            assert [route.handle for route in mhd.hot] == (handles or [route.handle for route in mhd.hot])
            handles = [route.handle for route in mhd.hot]
            assert gateway.client.get("/fhir/metadata").status_code == 200
