"""The MHD transport's token: the client credentials request as RFC 6749/8705/8707 want it, kept until
shortly before it expires and shared by threads, dropped when the recipient refused it, and every bad or
refusing answer of the token endpoint told apart (retry later, or a refusal with its OAuth error)."""

from __future__ import annotations

import threading
import time
from urllib.parse import parse_qs

import orjson
import pytest

from adapters.community.client_credentials import (
    TCU_SCOPE,
    ClientCredentials,
    TokenRefused,
    TokenUnavailable,
)
from adapters.community.transport import HttpAnswer, TransportError

URL = "https://valais.example.ch/dev-issuer/token"
RESOURCE = "https://cara.example.ch/fhir"


class Endpoint:
    """A token endpoint that checks the request and answers from a script (default: a fresh token)."""

    def __init__(self, lifetime: int = 300):
        self.lifetime = lifetime
        self.requests: list[dict] = []
        self.answers: list = []
        self.delay = 0.0

    def post(self, url, *, body, content_type, timeout, headers=None):
        assert url == URL and content_type == "application/x-www-form-urlencoded"
        assert headers == {"Accept": "application/json", "Connection": "close"}  # none kept idle
        form = parse_qs(body.decode(), strict_parsing=True)
        self.requests.append(form)
        time.sleep(self.delay)
        if self.answers:
            answer = self.answers.pop(0)
            if isinstance(answer, Exception):
                raise answer
            return answer
        return HttpAnswer(200, "application/json", orjson.dumps(
            {"access_token": f"token-{len(self.requests)}", "token_type": "Bearer", "expires_in": self.lifetime}))


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


def client(endpoint, clock=None) -> ClientCredentials:
    return ClientCredentials(token_url=URL, client_id="valais-deliverer", resource=RESOURCE, http=endpoint,
                             timeout=5.0, monotonic=clock or Clock())


def test_the_request_is_a_client_credentials_grant_for_the_recipient_as_a_technical_user():
    endpoint = Endpoint()

    assert client(endpoint).token() == "token-1"
    assert endpoint.requests == [{"grant_type": ["client_credentials"], "client_id": ["valais-deliverer"],
                                  "resource": [RESOURCE], "scope": [TCU_SCOPE]}]
    assert TCU_SCOPE == ("subject_role=urn:oid:2.16.756.5.30.1.127.3.10.6|TCU "
                         "purpose_of_use=urn:oid:2.16.756.5.30.1.127.3.10.5|AUTO")


def test_the_token_is_kept_until_shortly_before_it_expires():
    endpoint, clock = Endpoint(lifetime=300), Clock()
    tokens = client(endpoint, clock)

    first = tokens.token()
    clock.now += 269.9  # 300 s less the 30 s margin: still kept
    kept = tokens.token()
    clock.now += 0.1
    renewed = tokens.token()

    assert (first, kept, renewed) == ("token-1", "token-1", "token-2")
    assert len(endpoint.requests) == 2


def test_a_short_lived_token_is_renewed_after_three_quarters_of_its_life():
    endpoint, clock = Endpoint(lifetime=20), Clock()
    tokens = client(endpoint, clock)

    tokens.token()
    clock.now += 14.9
    assert tokens.token() == "token-1"
    clock.now += 0.1
    assert tokens.token() == "token-2"


def test_a_refused_token_is_dropped_once_not_a_newer_one():
    endpoint = Endpoint()
    tokens = client(endpoint)

    tokens.invalidate(tokens.token())
    second = tokens.token()
    tokens.invalidate("token-1")  # a late refusal of the old token leaves the new one
    assert (second, tokens.token()) == ("token-2", "token-2")


def test_threads_waiting_for_a_token_share_one_request():
    endpoint = Endpoint()
    endpoint.delay = 0.2
    tokens = client(endpoint)
    got = []
    threads = [threading.Thread(target=lambda: got.append(tokens.token())) for _ in range(8)]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert got == ["token-1"] * 8
    assert len(endpoint.requests) == 1


@pytest.mark.parametrize(("status", "error", "description"), [
    (401, {"error": "invalid_client", "error_description": "no client certificate"}, "no client certificate"),
    (400, {"error": "invalid_scope", "error_description": "only TCU\nand AUTO"}, "only TCU and AUTO"),
    (400, {"error": "unauthorized_client"}, "HTTP 400"),
])
def test_an_oauth_refusal_is_told_with_its_error_and_description(status, error, description):
    endpoint = Endpoint()
    endpoint.answers = [HttpAnswer(status, "application/json", orjson.dumps(error))]

    with pytest.raises(TokenRefused) as refused:
        client(endpoint).token()

    assert (refused.value.error, refused.value.description) == (error["error"], description)


@pytest.mark.parametrize(("answer", "reason"), [
    (TransportError("https://valais.example.ch: ConnectError: refused"), "token endpoint https://valais"),
    (HttpAnswer(503, "text/html", b"<h1>down</h1>"), "answered HTTP 503 without a JSON body"),
    (HttpAnswer(500, "application/json", b'{"error": "server_error"}'), "answered HTTP 500"),
    (HttpAnswer(404, "text/html", b"not here"), "answered HTTP 404 without a JSON body"),
    (HttpAnswer(200, "application/json", b"[]"), "answered HTTP 200"),
    (HttpAnswer(200, "application/json", b'{"token_type": "Bearer", "expires_in": 300}'), "no usable access_token"),
    (HttpAnswer(200, "application/json", b'{"access_token": "", "token_type": "Bearer"}'), "no usable access_token"),
    (HttpAnswer(200, "application/json", b'{"access_token": "t\\u00e9", "token_type": "Bearer"}'), "no usable"),
    (HttpAnswer(200, "application/json", orjson.dumps({"access_token": "x" * 40000, "token_type": "Bearer"})),
     "no usable access_token"),
    (HttpAnswer(200, "application/json", b'{"access_token": "t", "token_type": "mac"}'), "token_type must be Bearer"),
    (HttpAnswer(200, "application/json", b'{"access_token": "t", "token_type": "Bearer", "expires_in": 0}'),
     "expires_in"),
    (HttpAnswer(200, "application/json", b'{"access_token": "t", "token_type": "Bearer", "expires_in": true}'),
     "expires_in"),
    (HttpAnswer(200, "application/json", b'{"access_token": "t", "token_type": "Bearer", "expires_in": "300"}'),
     "expires_in"),
], ids=["unreachable", "503", "500-json", "404-html", "not-object", "no-token", "empty-token", "non-ascii",
        "huge", "not-bearer", "zero-life", "bool-life", "string-life"])
def test_an_answer_that_is_no_token_means_try_again_later(answer, reason):
    endpoint = Endpoint()
    endpoint.answers = [answer]

    with pytest.raises(TokenUnavailable, match=reason):
        client(endpoint).token()


def test_a_failed_request_keeps_nothing_and_the_next_call_asks_again():
    endpoint = Endpoint()
    endpoint.answers = [HttpAnswer(503, "text/html", b"")]
    tokens = client(endpoint)

    with pytest.raises(TokenUnavailable):
        tokens.token()
    assert tokens.token() == "token-2"


def test_a_token_without_expires_in_is_kept_a_minute():
    endpoint, clock = Endpoint(), Clock()
    endpoint.answers = [HttpAnswer(200, "application/json", b'{"access_token": "short", "token_type": "bearer"}')]
    tokens = client(endpoint, clock)

    assert tokens.token() == "short"
    clock.now += 44.9
    assert tokens.token() == "short"
    clock.now += 0.2
    assert tokens.token() == "token-2"
