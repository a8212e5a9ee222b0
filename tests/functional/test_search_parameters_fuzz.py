"""Every search parameter of every search route is parsed into a bounded value or refused with 400
and an OperationOutcome: arbitrary strings (hypothesis) never make a 5xx, in process and over the
real server's keep-alive connection (a dropped connection is a failure too)."""

from __future__ import annotations

import http.client
from urllib.parse import quote

import orjson
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import SEARCH, SPID, running_gateway, sqlite_url
from helpers import one_document_bundle

# The values the outside review found, and their kind: non-ASCII digits, the ends of the calendar,
# a dateTime without a zone, integers past every bound.
NAMED = ["²", "١٢", "１２", "𝟏𝟐", "99999999999", "9" * 5000, "-1", "0", "", "le9999-12-31", "gt9999-12-31",
         "eq0001-01-01T00:00:00+14:00", "2024-01-01T10:00:00", "ge9999-12-31T23:59:59-14:00", "lt0001-01-01",
         "sa2024", "2024-02-30", "2024\n", "%", "|", "||", ",", SEARCH, SEARCH + SPID + "\n",
         SEARCH + "７６１３３７６１０４１１３５３６５０", "urn:uuid:", "\x00", "a" * 3000]

# route → (token kind, its parameter names, the parameter that names the patient)
ROUTES = {
    "ITI-67": ("/fhir/DocumentReference", "hcp", ["patient.identifier", "status", "date", "period", "category",
               "type", "setting", "facility", "event", "format", "security-label", "related", "author.family",
               "author.given", "_count", "_offset"], ("patient.identifier", SEARCH + SPID)),
    "ITI-78": ("/fhir/Patient", "hcp", ["family", "given", "birthdate", "gender", "identifier", "family:exact",
               "given:exact", "_count"], ("family", "Muster")),
    "ITI-83": ("/fhir/Patient/$ihe-pix", "hcp", ["sourceIdentifier", "targetSystem"],
               ("sourceIdentifier", "urn:oid:2.16.756.5.30.1.999.2.1|L-1")),
    "PPQ-5": ("/fhir/Consent", "patient", ["patient:identifier", "identifier"], ("patient:identifier", SEARCH + SPID)),
    "ITI-81": ("/fhir/AuditEvent", "patient", ["entity.identifier", "date", "_count", "_offset"],
               ("entity.identifier", SEARCH + SPID)),
    "Communication": ("/fhir/Communication", "patient", ["recipient.identifier", "recipient:identifier"],
                      ("recipient.identifier", SEARCH + SPID)),
    "identity-reviews": ("/admin/identity-reviews", "padm", ["status", "_count"], None),
}

# The reviewed cases themselves, always tried.
REVIEWED = [
    ("ITI-67", [("_count", "²")]), ("ITI-67", [("_offset", "²")]), ("ITI-67", [("_offset", "99999999999")]),
    ("ITI-67", [("date", "le9999-12-31")]), ("ITI-67", [("date", "gt9999-12-31")]),
    ("ITI-67", [("date", "eq0001-01-01T00:00:00+14:00")]), ("ITI-67", [("date", "2024-01-01T10:00:00")]),
    ("ITI-67", [("_count", "9" * 5000)]), ("ITI-81", [("_count", "²")]), ("ITI-81", [("date", "le9999-12-31")]),
    ("ITI-81", [("date", "ge0001-01-01T00:00:00+14:00")]), ("ITI-81", [("date", "ge2024-01-01T10:00:00")]),
    ("ITI-81", [("_count", "abc")]), ("ITI-81", [("_offset", "-1")]),
    ("ITI-78", [("_count", "²")]), ("ITI-78", [("birthdate", "１９８０-05-17")]),
]

named = st.sampled_from(NAMED)
values = st.one_of(named, named, st.text(max_size=40),
                   st.builds(lambda p, v: p + v, st.sampled_from(["eq", "ge", "le", "gt", "lt", "ne"]),
                             named | st.text(max_size=25)))


def query_strategy(route: str):
    _, _, names, anchor = ROUTES[route]
    known = st.lists(st.tuples(st.sampled_from(names), values), min_size=1, max_size=3)
    unknown = st.lists(st.tuples(st.text(min_size=1, max_size=12), values), max_size=1)
    # Mostly with the patient parameter given right, so that parsing goes on to the others; an
    # unknown name now and then (a 400 before any other parameter is read).
    with_anchor = st.sampled_from([True, True, True, False])
    no_unknown = st.sampled_from([True, True, True, False])
    return st.tuples(with_anchor, known, no_unknown, unknown).map(
        lambda t: ([anchor] if t[0] and anchor else []) + t[1] + ([] if t[2] else t[3]))


def encode(pairs) -> str:
    return "&".join(f"{quote(n, safe='')}={quote(v, safe='')}" for n, v in pairs)


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_gateway(tmp, sqlite_url(tmp)) as gateway:
        gateway.register_patient()
        assert gateway.provide(one_document_bundle()).status_code == 200
        tokens = gateway.tokens
        gateway.headers_for = {
            "hcp": tokens.headers(tokens.hcp()), "patient": tokens.headers(tokens.patient()),
            "padm": tokens.headers(tokens.mint(role="PADM", user_id="padm-1", name="Policy admin"))}
        yield gateway


def assert_answered(response_status: int, body: bytes, where: str) -> None:
    assert response_status < 500, f"{where}: {response_status} {body[:300]!r}"
    resource = orjson.loads(body)
    if response_status >= 400:
        assert resource["resourceType"] == "OperationOutcome", where
        assert resource["issue"][0]["severity"] == "error", where


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_no_search_parameter_makes_a_5xx(fuzzed, route):
    path, token, _, _ = ROUTES[route]

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(query_strategy(route))
    def search(pairs):
        response = fuzzed.client.get(f"{path}?{encode(pairs)}", headers=fuzzed.headers_for[token])
        assert_answered(response.status_code, response.content, f"{route} {pairs!r}")

    search()


@pytest.mark.parametrize("route, pairs", REVIEWED)
def test_the_reviewed_values_are_a_400_or_a_bounded_answer(fuzzed, route, pairs):
    path, token, _, anchor = ROUTES[route]
    response = fuzzed.client.get(f"{path}?{encode([anchor, *pairs])}", headers=fuzzed.headers_for[token])
    assert_answered(response.status_code, response.content, f"{route} {pairs!r}")
    assert response.status_code in (200, 400), response.text


@pytest.fixture(scope="module")
def real_server(tmp_path_factory):
    from test_tls_server import Server, free_port

    server = Server(tmp_path_factory.mktemp("fuzz-server") / "data", free_port())
    yield server
    server.stop()


def test_the_real_server_keeps_its_connection_through_any_parameter(real_server):
    """One TLS keep-alive connection for every example: http.client does not reconnect silently, so
    a connection the server dropped fails the next request."""
    tokens = {"hcp": real_server.token(role="HCP", gln="7601000000002", name="Dr. Luc Favre"),
              "patient": real_server.token(role="PAT", spid=SPID, name="Anna Muster"),
              "padm": real_server.token(role="PADM", user_id="padm-1", name="Policy admin")}
    connection = http.client.HTTPSConnection("127.0.0.1", real_server.port, timeout=10,
                                             context=real_server.client_context(with_certificate=True))

    @settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(st.sampled_from(sorted(ROUTES)).flatmap(lambda r: st.tuples(st.just(r), query_strategy(r))))
    def search(example):
        route, pairs = example
        path, token, _, _ = ROUTES[route]
        connection.request("GET", f"{path}?{encode(pairs)}", headers={"Authorization": f"Bearer {tokens[token]}"})
        response = connection.getresponse()
        body = response.read()
        assert_answered(response.status, body, f"{route} {pairs!r}")
        assert (response.getheader("connection") or "").lower() != "close", f"{route} {pairs!r}"

    for route, pairs in REVIEWED:  # the reviewed values always, besides what hypothesis draws
        search = example((route, [ROUTES[route][3], *pairs]))(search)
    try:
        search()
    finally:
        connection.close()
