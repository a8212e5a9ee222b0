"""A path with a trailing slash redirected to the route without it — by a relative Location.

Why not Starlette's own `redirect_slashes`: it answers `https://<Host header>/portal`, and the client
chooses the Host header (`Host: evil.example` sent a patient to another site). The public base URL rule
(`Settings.fhir_base_url`, `public_origin`) holds for every face: a redirect names a path on this origin.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.routing import Match


def slash_redirect(request: Request) -> RedirectResponse | None:
    """307 to the same path without its trailing slash(es) when a route answers there, else None."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or not path.endswith("/") or path == "/":
        return None
    other = path.rstrip("/")
    if not other.startswith("/") or other.startswith("//"):  # `//host` would be another site
        return None
    scope = {**request.scope, "path": other}
    if not any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
        return None
    query = request.url.query
    return RedirectResponse(other + (f"?{query}" if query else ""), status_code=307)
