"""Patient data is never kept by a cache: every FHIR and admin answer but public metadata carries
`Cache-Control: no-store` — reads, searches (GET and POST _search), errors; the CapabilityStatement may
be cached."""

from __future__ import annotations

import re

from gateway.http.route_table import every_route

from conftest import SEARCH, SPID


def fhir_get_paths(app) -> list[str]:
    return sorted({re.sub(r"\{[^}]+\}", "x", route.path) for route in every_route(app.router.routes)
                   if "GET" in (route.methods or ())
                   and route.path.startswith(("/fhir/", "/admin/")) and route.path != "/fhir/metadata"
                   and "/.well-known/" not in route.path})


def test_every_fhir_and_admin_answer_with_patient_data_is_no_store(sqlite_gateway):
    sqlite_gateway.register_patient()
    client, headers = sqlite_gateway.client, sqlite_gateway.as_hcp()
    paths = fhir_get_paths(client.app)
    answers = {path: client.get(path, headers=headers) for path in paths}
    answers["search"] = sqlite_gateway.find()
    answers["POST _search"] = client.post("/fhir/DocumentReference/_search", headers={
        **headers, "Content-Type": "application/x-www-form-urlencoded"}, content=f"patient.identifier={SEARCH}{SPID}")
    answers["unauthenticated"] = client.get("/fhir/DocumentReference")

    assert len(paths) >= 8 and answers["search"].status_code == 200
    assert {name: answer.headers.get("cache-control") for name, answer in answers.items()
            if answer.headers.get("cache-control") != "no-store"} == {}


def test_the_capability_statement_may_be_cached(sqlite_gateway):
    assert "cache-control" not in sqlite_gateway.client.get("/fhir/metadata").headers
