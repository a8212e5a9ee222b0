"""Deny by default: every route outside the short public list requires an authenticated principal."""

import pytest
from fastapi.routing import APIRoute
from starlette.routing import Route

from gateway.hcp import PUBLIC_PATHS as HCP_PUBLIC_PATHS
from gateway.portal import PUBLIC_PATHS as PORTAL_PUBLIC_PATHS
from gateway.http.security import PUBLIC_PATHS, require_principal


def dependency_calls(route: APIRoute) -> set:
    calls, stack = set(), [route.dependant]
    while stack:
        dependant = stack.pop()
        calls.add(dependant.call)
        stack.extend(dependant.dependencies)
    return calls


def all_routes(routes) -> list[Route]:
    """Every endpoint, also those inside included routers (FastAPI keeps them nested)."""
    found = []
    for route in routes:
        nested = getattr(route, "original_router", None)
        found += all_routes(nested.routes) if nested is not None else [route] if isinstance(route, Route) else []
    return found


def guarded(route: Route) -> bool:
    if isinstance(route, APIRoute):
        return require_principal in dependency_calls(route)
    if getattr(route.endpoint, "requires_page_session", False):  # a web page's: behind `signed_in_page`
        return True
    return getattr(route.endpoint, "requires_principal", False)  # a plain route behind `authenticated`


def test_every_non_public_route_requires_a_principal(gateway):
    routes = all_routes(gateway.client.app.routes)
    public = PUBLIC_PATHS | PORTAL_PUBLIC_PATHS | HCP_PUBLIC_PATHS
    unguarded = [r.path for r in routes if r.path not in public and not guarded(r)]

    assert {r.path for r in routes} >= PUBLIC_PATHS | {"/fhir", "/fhir/DocumentReference", "/fhir/Binary/{entry_id}",
                                                       "/fhir/DocumentReference/{entry_id}"}
    assert unguarded == []


def test_a_plain_route_without_the_guard_would_be_found():
    async def endpoint(_request):
        return None

    assert not guarded(Route("/fhir/Anything", endpoint))


def test_public_list_is_exactly_metadata_discovery_health_and_the_development_token_endpoint():
    assert PUBLIC_PATHS == {"/fhir/metadata", "/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration",
                            "/health/live", "/health/ready",
                            "/openapi.json", "/docs", "/dev-issuer/token"}


@pytest.mark.parametrize("method, path", [
    ("POST", "/fhir"),
    ("GET", "/fhir/DocumentReference?patient.identifier=urn:oid:2.16.756.5.30.1.127.3.10.3|761337610411353650"),
    ("GET", "/fhir/DocumentReference/x"),
    ("GET", "/fhir/Binary/x"),
    ("PUT", "/fhir/Patient?identifier=urn:oid:1.2|3"),
])
def test_each_exchange_without_token_is_a_401_outcome(gateway, method, path):
    response = gateway.client.request(method, path, content=b"{}", headers={"Content-Type": "application/fhir+json"})

    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["issue"][0]["code"] == "login"


def test_public_routes_answer_without_token(gateway):
    metadata = gateway.client.get("/fhir/metadata")

    assert metadata.status_code == 200
    assert metadata.json()["resourceType"] == "CapabilityStatement"
    assert metadata.json()["fhirVersion"] == "4.0.1"
    assert gateway.client.get("/health/live").status_code == 200
    assert gateway.client.get("/health/ready").json() == {"status": "ready",
                                                          "checks": {"database": "up", "ledger": "up"}}


def test_the_portals_public_pages_are_only_the_sign_in_steps(gateway):
    portal_paths = {r.path for r in all_routes(gateway.client.app.routes) if r.path.startswith("/portal")}

    assert PORTAL_PUBLIC_PATHS == {"/portal", "/portal/sign-in", "/portal/dev-sign-in", "/portal/oidc/login",
                                   "/portal/oidc/callback", "/portal/language"}
    assert portal_paths - PORTAL_PUBLIC_PATHS >= {"/portal/documents", "/portal/documents/{entry_id}/content",
                                                  "/portal/sharing/apply", "/portal/trail", "/portal/sign-out"}


def test_the_physicians_public_pages_are_only_the_sign_in_steps(gateway):
    hcp_routes = [r for r in all_routes(gateway.client.app.routes) if r.path.startswith("/hcp")]
    hcp_paths = {r.path for r in hcp_routes}

    assert HCP_PUBLIC_PATHS == {"/hcp", "/hcp/sign-in", "/hcp/dev-sign-in", "/hcp/oidc/login", "/hcp/oidc/callback",
                                "/hcp/language"}
    assert hcp_paths - HCP_PUBLIC_PATHS >= {"/hcp/patients", "/hcp/patients/{pid}", "/hcp/patients/{pid}/upload",
                                            "/hcp/patients/{pid}/documents/{entry_id}/content",
                                            "/hcp/patients/{pid}/emergency", "/hcp/activity", "/hcp/sign-out"}
    for route in (r for r in hcp_routes if r.path not in HCP_PUBLIC_PATHS):  # each sends a browser without a
        for method in route.methods - {"HEAD"}:                             # session to sign in, POST alike
            answer = gateway.client.request(method, route.path.replace("{pid}", "x").replace("{entry_id}", "y"),
                                            follow_redirects=False)
            assert (answer.status_code, answer.headers["location"]) == (303, "/hcp/sign-in"), route.path
