"""The app's endpoints as one flat list (FastAPI keeps included routers nested), for what must be
derived from the routes themselves: a 405's `Allow`, the CapabilityStatement."""

from __future__ import annotations

from starlette.routing import Route

__all__ = ["every_route", "methods_for_path"]


def every_route(routes) -> list[Route]:
    found: list[Route] = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        if nested is not None:
            found += every_route(nested.routes)
        elif isinstance(route, Route):
            found.append(route)
    return found


def methods_for_path(routes, path: str) -> set[str]:
    """The methods of every endpoint whose path matches `path`; HEAD wherever GET (see rest_conventions)."""
    methods: set[str] = set()
    for route in every_route(routes):
        if route.methods and route.path_regex.match(path):
            methods |= set(route.methods)
    if "GET" in methods:
        methods.add("HEAD")
    return methods
