"""Public discovery documents besides the CapabilityStatement: the SMART configuration (which
issuers' tokens the gateway trusts, where to get them, which scopes) and the OpenAPI description.

Public metadata only: issuer URLs and endpoints from the trusted-issuers file (optional
`token_endpoint`, `authorization_endpoint`, `introspection_endpoint` per issuer), never a key.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from adapters.cara.vocabulary import PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM
from gateway.auth.identifiers import PURPOSES, ROLES

__all__ = ["smart_configuration", "oauth_uris", "add_plain_routes_to_openapi"]

_ENDPOINTS = ("authorization_endpoint", "token_endpoint", "introspection_endpoint", "revocation_endpoint")


def _trusted(path: Path | None) -> list[dict[str, Any]]:
    try:
        entries = json.loads(Path(path).read_text(encoding="utf-8")).get("issuers", []) if path else []
    except (OSError, ValueError, AttributeError):
        return []  # the verifier refuses to start on such a file; discovery only says less
    return [e for e in entries if isinstance(e, dict) and isinstance(e.get("issuer"), str)]


def _published(entry: dict[str, Any]) -> dict[str, str]:
    published = {"issuer": entry["issuer"]}
    if isinstance(entry.get("jwks_url"), str):
        published["jwks_uri"] = entry["jwks_url"]
    published.update({name: entry[name] for name in _ENDPOINTS if isinstance(entry.get(name), str)})
    return published


def smart_configuration(trusted_issuers: Path | None) -> dict[str, Any]:
    """SMART App Launch 2 `/.well-known/smart-configuration`, with IUA (CH:EPR) scopes. The first
    trusted issuer is the main one; all are listed under `epr_trusted_issuers`."""
    issuers = [_published(entry) for entry in _trusted(trusted_issuers)]
    document: dict[str, Any] = dict(issuers[0]) if issuers else {}
    document.update({
        "grant_types_supported": ["authorization_code", "client_credentials",
                                  "urn:ietf:params:oauth:grant-type:jwt-bearer"],
        "token_endpoint_auth_methods_supported": ["private_key_jwt", "tls_client_auth"],
        "scopes_supported": [*(f"subject_role={ROLE_SYSTEM}|{role}" for role in sorted(ROLES)),
                             *(f"purpose_of_use={PURPOSE_OF_USE_SYSTEM}|{p}" for p in sorted(PURPOSES)),
                             "person_id"],
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": ["client-confidential-asymmetric", "context-standalone-patient", "sso-openid-connect"],
        "epr_trusted_issuers": issuers,
    })
    return document


def oauth_uris(trusted_issuers: Path | None) -> dict[str, str]:
    """The SMART `oauth-uris` extension's values (authorize, token, …) of the main trusted issuer."""
    entries = _trusted(trusted_issuers)
    if not entries:
        return {}
    names = {"authorization_endpoint": "authorize", "token_endpoint": "token",
             "introspection_endpoint": "introspect", "revocation_endpoint": "revoke"}
    return {short: entries[0][name] for name, short in names.items() if isinstance(entries[0].get(name), str)}


def add_plain_routes_to_openapi(schema: dict[str, Any], routes) -> dict[str, Any]:
    """FastAPI describes its own routes only: add the plain Starlette ones (the hot reads)."""
    from fastapi.routing import APIRoute

    from gateway.http.route_table import every_route

    paths = schema.setdefault("paths", {})
    for route in every_route(routes):
        if isinstance(route, APIRoute) or not route.path.startswith("/fhir"):
            continue
        doc = (route.endpoint.__doc__ or "").strip().splitlines()
        for method in sorted((route.methods or set()) - {"HEAD"}):
            operation = {"summary": doc[0] if doc else route.path, "security": [{"bearer": []}],
                         "parameters": [{"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
                                        for name in route.param_convertors],
                         "responses": {"200": {"description": "FHIR JSON (or the document's bytes for Binary)"}}}
            paths.setdefault(route.path, {})[method.lower()] = operation
    schema.setdefault("components", {}).setdefault("securitySchemes", {})["bearer"] = {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT (IUA)"}
    return schema
