"""An IUA access token for the MHD transport, by the OAuth 2.0 client credentials grant (RFC 6749 §4.4),
the client authenticated by its TLS certificate (RFC 8705 §2.1, `tls_client_auth`).

Why mutual TLS rather than a signed client assertion (`private_key_jwt`, RFC 7523): the gateway already
holds a certificate that the community trusts for this exchange (the `tls` of its configuration: the
ITI-65 is sent over mutual TLS anyway), the key never signs anything that could be replayed (an
assertion is a bearer credential for its lifetime, which the token endpoint would have to remember by
`jti`), and there is no second key to register and rotate. The request names the client (`client_id`,
RFC 8705 §2) and the resource the token is for (`resource`, RFC 8707: the recipient's FHIR base, which
the recipient checks as the token's audience), and asks for the technical user's scope (TCU, AUTO).

The token is kept until shortly before it expires (`refresh_margin`, at most a quarter of its
lifetime) and shared by the threads of one process; `invalidate` drops it when the recipient refused it
(401), so that the next `token()` asks again. A failure says which kind it is: `TokenUnavailable` (the
endpoint could not be reached or its answer not read: try again later) or `TokenRefused` (the endpoint
refused the client or the request: an OAuth error code and its description, a configuration matter).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlencode

import orjson

from adapters.cara.vocabulary import PURPOSE_OF_USE_SYSTEM, ROLE_SYSTEM
from adapters.community.transport import Poster, TransportError

FORM = "application/x-www-form-urlencoded"
TCU_SCOPE = f"subject_role={ROLE_SYSTEM}|TCU purpose_of_use={PURPOSE_OF_USE_SYSTEM}|AUTO"
MAX_REFRESH_MARGIN_SECONDS = 30.0
DEFAULT_LIFETIME_SECONDS = 60  # an answer without expires_in (RFC 6749 §5.1 only recommends it)
MAX_TOKEN_CHARS = 32 * 1024  # as the gateway's verifier accepts


class TokenUnavailable(Exception):
    """No token now (connection, timeout, 5xx, an answer that is not a token answer): retry later."""

    def __init__(self, text: str):
        super().__init__(text)
        self.text = text


class TokenRefused(Exception):
    """The token endpoint refused (an OAuth error: invalid_client, unauthorized_client, invalid_scope…)."""

    def __init__(self, error: str, description: str):
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description


@dataclass(frozen=True)
class _Held:
    token: str
    refresh_at: float  # monotonic


class ClientCredentials:
    """One client's token for one resource, fetched when needed and kept until shortly before it expires."""

    def __init__(self, *, token_url: str, client_id: str, resource: str, http: Poster, timeout: float,
                 scope: str = TCU_SCOPE, monotonic: Callable[[], float] = time.monotonic):
        self._url = token_url
        self._form = urlencode({"grant_type": "client_credentials", "client_id": client_id, "resource": resource,
                                "scope": scope}).encode()
        self._http = http
        self._timeout = timeout
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._held: _Held | None = None

    def token(self) -> str:
        """The held token, or a new one (one request at a time: threads waiting for it share it)."""
        with self._lock:
            held = self._held
            if held is not None and self._monotonic() < held.refresh_at:
                return held.token
            self._held = None
            asked_at = self._monotonic()
            token, lifetime = self._fetch()
            self._held = _Held(token, asked_at + lifetime - min(MAX_REFRESH_MARGIN_SECONDS, lifetime / 4))
            return token

    def invalidate(self, token: str) -> None:
        """The recipient refused `token`: the next `token()` asks for a new one (unless another thread
        already did)."""
        with self._lock:
            if self._held is not None and self._held.token == token:
                self._held = None

    def _fetch(self) -> tuple[str, float]:
        try:
            # Connection: close — a token is asked for once per lifetime, so a kept connection only idles;
            # an idle TLS connection holds the token endpoint's graceful shutdown (on a development
            # gateway that is itself: its deliverer's connection kept `serve` from stopping).
            answer = self._http.post(self._url, body=self._form, content_type=FORM, timeout=self._timeout,
                                     headers={"Accept": "application/json", "Connection": "close"})
        except TransportError as exc:
            raise TokenUnavailable(f"token endpoint {exc.text}") from None
        try:
            document = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            document = None
        if answer.status == 200 and isinstance(document, dict):
            return _token_of(document, self._url)
        if 400 <= answer.status < 500 and isinstance(document, dict) and isinstance(document.get("error"), str):
            description = document.get("error_description")
            said = _printable(description, 500) if isinstance(description, str) else f"HTTP {answer.status}"
            raise TokenRefused(_printable(document["error"], 64), said)
        raise TokenUnavailable(f"token endpoint {self._url} answered HTTP {answer.status}"
                               + ("" if isinstance(document, dict) else " without a JSON body"))


def _token_of(document: dict, url: str) -> tuple[str, float]:
    token, kind = document.get("access_token"), document.get("token_type")
    lifetime = document.get("expires_in", DEFAULT_LIFETIME_SECONDS)
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS or not token.isascii():
        raise TokenUnavailable(f"token endpoint {url}: the answer holds no usable access_token")
    if not isinstance(kind, str) or kind.casefold() != "bearer":
        raise TokenUnavailable(f"token endpoint {url}: token_type must be Bearer")
    if isinstance(lifetime, bool) or not isinstance(lifetime, int) or lifetime <= 0:
        raise TokenUnavailable(f"token endpoint {url}: expires_in must be a positive number of seconds")
    return token, float(lifetime)


def _printable(value: str, limit: int) -> str:
    """What an operator may read of the endpoint's words: one line, bounded."""
    return "".join(c if c.isprintable() else " " for c in value)[:limit]
