"""The practice physician's web page, served by the gateway under /hcp on the same TLS origin as the
patient's page, in the house both share (`gateway.pages`: sessions, CSRF, headers, languages, layout).

`install(app, services=…, …)`, called by the composition root, adds its routes (each behind `site.signed_in`
or in `PUBLIC_PATHS`), its static assets and its security headers. The page calls the use-case layer only:
`services.professionals` (sign-in, finding a patient, emergency, upload, activity) and `services.exchange`
(ITI-67, ITI-68) — the decisions and audit records a FHIR client with the same principal gets.
"""

from __future__ import annotations

from pathlib import Path

from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from gateway.hcp import routes_activity, routes_patients, routes_signin, routes_upload
from gateway.hcp.identity import claim_names, oidc_client
from gateway.hcp.site import Hcp, HcpSession
from gateway.pages.headers import PageHeaders
from gateway.pages.sessions import Sessions, session_store
from gateway.pages.site import public_paths, sign_in_routes

STATIC = Path(__file__).parent.parent / "pages" / "static"
# Pages reachable before sign-in. Everything else under /hcp is behind `signed_in`.
PUBLIC_PATHS = public_paths("/hcp")

ROUTES = [
    *sign_in_routes("/hcp", routes_signin),
    Route("/hcp/patients", routes_patients.patients, methods=["GET"]),
    Route("/hcp/patients/{pid}", routes_patients.documents, methods=["GET"]),
    Route("/hcp/patients/{pid}/documents/{entry_id}/content", routes_patients.content, methods=["GET"]),
    Route("/hcp/patients/{pid}/emergency", routes_patients.emergency_form, methods=["GET"]),
    Route("/hcp/patients/{pid}/emergency", routes_patients.start_emergency, methods=["POST"]),
    Route("/hcp/patients/{pid}/emergency/end", routes_patients.end_emergency, methods=["POST"]),
    Route("/hcp/patients/{pid}/upload", routes_upload.upload_form, methods=["GET"]),
    Route("/hcp/patients/{pid}/upload", routes_upload.upload, methods=["POST"]),
    Route("/hcp/activity", routes_activity.activity, methods=["GET"]),
]


def install(app, *, services, settings, demo_professionals: tuple[tuple[str, str, str], ...],
            demo_local_system: str = "") -> None:
    """Called by the composition root with the use-cases, the settings, the (GLN, name, institution) of the
    professionals the development sign-in offers (never offered in production) and the system of their
    institution's patient ids."""
    sessions = Sessions(store=session_store(settings, namespace="hcp", kind=HcpSession),
                        idle_seconds=settings.portal_session_idle_seconds,
                        absolute_seconds=settings.portal_session_absolute_seconds, kind=HcpSession)
    app.state.hcp = Hcp(services=services, sessions=sessions, oidc=oidc_client(settings), claims=claim_names(settings),
                        dev_sign_in=not settings.is_production, public_origin=settings.public_origin,
                        emergency_minutes=settings.hcp_emergency_minutes, directory=demo_professionals,
                        max_upload_bytes=settings.hcp_max_upload_bytes, demo_local_system=demo_local_system)
    app.router.routes.extend(ROUTES)
    app.router.routes.append(Mount("/hcp/static", StaticFiles(directory=str(STATIC)), name="hcp_static"))
    app.add_middleware(PageHeaders, prefix="/hcp")
