"""The patient's web page, served by the gateway under /portal on the same TLS origin.

`install(app, services=…, …)`, called by the composition root, adds its routes (plain Starlette routes, each
behind `pages.signed_in` or in `PUBLIC_PATHS`), its static assets and its security headers to the gateway's
app. The pages call the use-case layer only (`services.exchange`, `.policies`, `.trail`, `.portal`,
`.metadata`): the same decisions and audit records as the FHIR face, no other door to the store.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.portal import routes_documents, routes_notices, routes_sharing, routes_signin, routes_trail
from gateway.portal.directory import Directory
from gateway.pages.headers import PageHeaders
from gateway.portal.identity import oidc_client
from gateway.portal.pages import Portal, PortalSession
from gateway.pages.sessions import Sessions, session_store
from gateway.pages.site import public_paths, sign_in_routes

STATIC = Path(__file__).parent / "static"
# Pages reachable before sign-in. Everything else under /portal is behind `signed_in`.
PUBLIC_PATHS = public_paths("/portal")

ROUTES = [
    *sign_in_routes("/portal", routes_signin),
    Route("/portal/documents", routes_documents.documents, methods=["GET"]),
    Route("/portal/documents/{entry_id}", routes_documents.document, methods=["GET"]),
    Route("/portal/documents/{entry_id}/content", routes_documents.content, methods=["GET"]),
    Route("/portal/documents/{entry_id}/confidentiality/preview", routes_documents.preview_confidentiality,
          methods=["POST"]),
    Route("/portal/documents/{entry_id}/confidentiality", routes_documents.change_confidentiality, methods=["POST"]),
    Route("/portal/notifications/seen", routes_notices.mark_seen, methods=["POST"]),
    Route("/portal/sharing", routes_sharing.sharing, methods=["GET"]),
    Route("/portal/sharing/preview", routes_sharing.preview, methods=["POST"]),
    Route("/portal/sharing/apply", routes_sharing.apply, methods=["POST"]),
    Route("/portal/trail", routes_trail.trail, methods=["GET"]),
]


def install(app, *, services, settings, directory: Directory, demo_spid: str) -> None:
    """Called by the composition root with the use-cases, the settings, the directory of professionals
    and groups, and the SPID the development sign-in offers (never offered in production)."""
    sessions = Sessions(store=session_store(settings, kind=PortalSession), kind=PortalSession,
                        idle_seconds=settings.portal_session_idle_seconds,
                        absolute_seconds=settings.portal_session_absolute_seconds)
    app.state.portal = Portal(services=services, sessions=sessions, directory=directory,
                              oidc=oidc_client(settings), dev_sign_in=not settings.is_production,
                              demo_spid=demo_spid, public_origin=settings.public_origin, settings=settings)
    app.router.routes.extend(ROUTES)
    app.router.routes.append(Mount("/portal/static", StaticFiles(directory=str(STATIC), packages=[("gateway.pages", "static")]),
                                   name="portal_static"))
    app.add_middleware(PageHeaders, prefix="/portal")
