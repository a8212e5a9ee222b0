"""The public base URL rule on every face: a client's `Host` header moves no redirect, no OIDC callback
(test_portal_oidc), no link in a page and no origin check. Links in FHIR answers: test_links_and_documents."""

from __future__ import annotations

import re

import pytest
from starlette.routing import Mount

from conftest import SPID
from gateway.http.route_table import every_route

EVIL = "evil.example"
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def get_paths(app) -> list[str]:
    """Every GET route of the app, path parameters filled with a placeholder."""
    paths = [re.sub(r"\{[^}]+\}", "x", route.path) for route in every_route(app.router.routes)
             if "GET" in (route.methods or ())]
    paths += [f"{route.path}/pages.css" for route in app.router.routes if isinstance(route, Mount)]
    return sorted(set(paths))


def test_no_trailing_slash_redirect_names_the_host_header(sqlite_gateway):
    client = sqlite_gateway.client
    redirects = {}
    for path in get_paths(client.app):
        answer = client.get(f"{path}/?_format=json", headers={"Host": EVIL}, follow_redirects=False)
        if answer.is_redirect:
            redirects[path] = answer.headers["location"]

    assert redirects, "no route answered its slashed path with a redirect"
    # The same path without its slash, relative (the query as the route saw it: `_format` is consumed
    # by the REST conventions on the FHIR reads).
    assert {path: location for path, location in redirects.items()
            if location not in (path, f"{path}?_format=json")} == {}


@pytest.mark.parametrize("path", ["//evil.example/", "/%2F%2Fevil.example/", "/portal/..//evil.example/"])
def test_a_slashed_path_never_redirects_to_another_site(sqlite_gateway, path):
    answer = sqlite_gateway.client.get(path, follow_redirects=False)

    assert not (answer.is_redirect and "evil" in answer.headers["location"])


def test_every_portal_redirect_and_page_stays_on_this_origin(sqlite_gateway):
    sqlite_gateway.register_patient()
    client = sqlite_gateway.client
    client.headers["Host"] = EVIL
    token = CSRF.search(client.get("/portal/sign-in").text).group(1)
    steps = [client.get("/portal", follow_redirects=False),
             client.post("/portal/dev-sign-in", data={"csrf_token": token, "spid": SPID}, follow_redirects=False)]
    pages = [client.get(path) for path in ("/portal/documents", "/portal/sharing", "/portal/trail")]

    assert [step.headers["location"] for step in steps] == ["/portal/sign-in", "/portal/documents"]
    assert [page.status_code for page in pages] == [200, 200, 200]
    assert not any(EVIL in page.text for page in pages)


def test_a_form_from_the_host_headers_origin_is_refused(sqlite_gateway):
    """The origin check compares with the public origin: a request that claims `Host: evil.example` and
    comes from `https://evil.example` is not same-origin for the gateway at https://testserver."""
    sqlite_gateway.register_patient()
    client = sqlite_gateway.client
    token = CSRF.search(client.get("/portal/sign-in").text).group(1)

    answer = client.post("/portal/dev-sign-in", data={"csrf_token": token, "spid": SPID},
                         headers={"Host": EVIL, "Origin": f"https://{EVIL}"}, follow_redirects=False)
    accepted = client.post("/portal/dev-sign-in", data={"csrf_token": token, "spid": SPID},
                           headers={"Origin": "https://testserver"}, follow_redirects=False)

    assert answer.status_code == 403
    assert (accepted.status_code, accepted.headers["location"]) == (303, "/portal/documents")
