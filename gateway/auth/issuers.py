"""The token issuers we trust and their signing keys (JWKS), configured by `EPR_TRUSTED_ISSUERS`.

```json
{"issuers": [{"issuer": "https://idp.example.ch", "jwks_url": "https://idp.example.ch/jwks"},
             {"issuer": "https://127.0.0.1:8443/dev-issuer", "jwks_file": "dev-issuer.jwks.json"}]}
```

Why it looks like this:
- Trust is an explicit list: a token's own `jku`/`x5u`/`jwk` headers are never followed, so a token
  cannot bring the key that verifies it. Symmetric (`oct`) and encryption keys are dropped on load.
- Issuers rotate keys by publishing a new `kid` first. An unknown `kid` therefore triggers one
  re-read of the key set; for a URL at most once per minute per issuer, so that a stream of forged
  `kid`s cannot turn the gateway into an amplifier against the issuer. A URL's keys are also
  refreshed after an hour, so that a key the issuer withdrew stops being accepted. A file is re-read
  whenever it changed on disk.
- A failed refresh keeps the keys we had (availability) and is logged; it never widens trust.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import JWKRegistry, Key

from gateway.auth.errors import AuthenticationFailed

log = logging.getLogger("epr.gateway.auth")

FETCH_TIMEOUT_SECONDS = 5.0
MIN_REFETCH_INTERVAL_SECONDS = 60.0
MAX_KEY_AGE_SECONDS = 3600.0
MAX_JWKS_BYTES = 1024 * 1024
_ASYMMETRIC_KEY_TYPES = frozenset({"EC", "RSA", "OKP"})
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})


class TrustedIssuersInvalid(ValueError):
    """The trusted-issuers configuration cannot be used (raised at start-up, not per request)."""


class KeySource(Protocol):
    def lookup(self, kid: str) -> Key | None: ...


def parse_jwks(document: Any, *, origin: str) -> dict[str, Key]:
    """Public signing keys by kid. Keys without kid, symmetric or `use: enc` keys are skipped (logged)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise TrustedIssuersInvalid(f"{origin}: not a JWKS (no 'keys' list)")
    keys: dict[str, Key] = {}
    for position, entry in enumerate(document["keys"]):
        if not isinstance(entry, dict):
            log.warning("%s: key %d is not an object; skipped", origin, position)
            continue
        kid = entry.get("kid")
        if not isinstance(kid, str) or not kid:
            log.warning("%s: key %d has no kid; skipped", origin, position)
            continue
        if entry.get("kty") not in _ASYMMETRIC_KEY_TYPES or entry.get("use", "sig") != "sig":
            log.warning("%s: key %s is not an asymmetric signing key; skipped", origin, kid)
            continue
        if kid in keys:
            log.warning("%s: kid %s appears twice; the first one is used", origin, kid)
            continue
        public = {name: value for name, value in entry.items() if name not in _PRIVATE_MEMBERS}
        try:
            keys[kid] = JWKRegistry.import_key(public)
        except (JoseError, ValueError, TypeError) as exc:
            log.warning("%s: key %s cannot be imported (%s); skipped", origin, kid, type(exc).__name__)
    return keys


class FileKeys:
    """A JWKS file, re-read when it changed on disk or when an unknown kid is asked for."""

    def __init__(self, *, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int] | None = None
        self._keys = self._read()
        if not self._keys:
            raise TrustedIssuersInvalid(f"{path}: no usable signing key")

    def lookup(self, kid: str) -> Key | None:
        with self._lock:
            if self._stamp != self._stat():
                self._reload()
            key = self._keys.get(kid)
            if key is None:
                self._reload()  # local and cheap: no rate limit needed
                key = self._keys.get(kid)
            return key

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = os.stat(self._path)
        except OSError:
            return None
        return info.st_mtime_ns, info.st_size, info.st_ino

    def _read(self) -> dict[str, Key]:
        stamp = self._stat()
        try:
            document = json.loads(self._path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrustedIssuersInvalid(f"{self._path}: cannot read JWKS ({type(exc).__name__})") from exc
        keys = parse_jwks(document, origin=str(self._path))
        self._stamp = stamp
        return keys

    def _reload(self) -> None:
        try:
            self._keys = self._read()
        except TrustedIssuersInvalid as exc:
            log.warning("keeping the previous signing keys: %s", exc)


class UrlKeys:
    """A JWKS URL, fetched on first use, then again on an unknown kid (≤ once a minute) or after an hour."""

    def __init__(self, *, url: str, http: httpx.Client, monotonic: Callable[[], float] = time.monotonic) -> None:
        if not url.startswith("https://"):
            raise TrustedIssuersInvalid(f"jwks_url must be https: {url}")
        self._url = url
        self._http = http
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, Key] = {}
        self._fetched_at: float | None = None  # last attempt, successful or not
        self._loaded_at: float | None = None  # last success

    def lookup(self, kid: str) -> Key | None:
        with self._lock:
            now = self._monotonic()
            stale = self._loaded_at is None or now - self._loaded_at >= MAX_KEY_AGE_SECONDS
            if (stale or kid not in self._keys) and self._may_fetch(now):
                self._fetch(now)
            return self._keys.get(kid)

    def _may_fetch(self, now: float) -> bool:
        return self._fetched_at is None or now - self._fetched_at >= MIN_REFETCH_INTERVAL_SECONDS

    def _fetch(self, now: float) -> None:
        self._fetched_at = now
        try:
            with self._http.stream("GET", self._url, timeout=FETCH_TIMEOUT_SECONDS) as response:
                if response.status_code != 200:
                    raise ValueError(f"HTTP {response.status_code}")
                body = bytearray()
                for chunk in response.iter_bytes():
                    body.extend(chunk)
                    if len(body) > MAX_JWKS_BYTES:
                        raise ValueError("JWKS larger than 1 MiB")
            keys = parse_jwks(json.loads(body), origin=self._url)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("JWKS %s not refreshed, keeping %d known keys: %s", self._url, len(self._keys),
                        exc if isinstance(exc, ValueError) else type(exc).__name__)
            return
        self._keys = keys
        self._loaded_at = now


class TrustedIssuers:
    """Issuer URL → its signing keys. An empty list is refused: trusting nobody is a configuration error."""

    def __init__(self, *, sources: Mapping[str, KeySource]) -> None:
        if not sources:
            raise TrustedIssuersInvalid("no trusted issuer configured")
        self._sources = dict(sources)

    @classmethod
    def load(cls, path: Path, *, http: httpx.Client | None = None,
             monotonic: Callable[[], float] = time.monotonic) -> TrustedIssuers:
        """Read the trusted-issuers JSON file; relative `jwks_file` paths are relative to it."""
        path = Path(path)
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrustedIssuersInvalid(f"{path}: cannot read trusted issuers ({type(exc).__name__})") from exc
        entries = document.get("issuers") if isinstance(document, dict) else None
        if not isinstance(entries, list):
            raise TrustedIssuersInvalid(f"{path}: expected {{\"issuers\": [...]}}")
        client = http
        sources: dict[str, KeySource] = {}
        for position, entry in enumerate(entries):
            where = f"{path}: issuers[{position}]"
            if not isinstance(entry, dict) or not isinstance(entry.get("issuer"), str) or not entry["issuer"]:
                raise TrustedIssuersInvalid(f"{where}: 'issuer' (string) is required")
            issuer = entry["issuer"]
            if issuer in sources:
                raise TrustedIssuersInvalid(f"{where}: issuer {issuer} is listed twice")
            has_file, has_url = "jwks_file" in entry, "jwks_url" in entry
            if has_file == has_url:
                raise TrustedIssuersInvalid(f"{where}: exactly one of 'jwks_file' or 'jwks_url' is required")
            if has_file:
                sources[issuer] = FileKeys(path=(path.parent / str(entry["jwks_file"])))
            else:
                if client is None:
                    client = httpx.Client(follow_redirects=False)
                sources[issuer] = UrlKeys(url=str(entry["jwks_url"]), http=client, monotonic=monotonic)
        return cls(sources=sources)

    @property
    def issuers(self) -> tuple[str, ...]:
        return tuple(self._sources)

    def is_trusted(self, issuer: str) -> bool:
        return issuer in self._sources

    def key_for(self, *, issuer: str, kid: str) -> Key:
        source = self._sources.get(issuer)
        if source is None:
            raise AuthenticationFailed("unknown issuer")
        key = source.lookup(kid)
        if key is None:
            raise AuthenticationFailed("unknown signing key (kid)")
        return key
