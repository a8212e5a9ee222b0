"""Server-side sessions of the gateway's web pages: the cookie carries a random id only.

Why server-side: signing out, the idle timeout and the absolute timeout must end a session for good,
which a signed cookie cannot do (a copy of it stays valid). The store keeps a session under the
SHA-256 of its id, so a dump of Redis or of memory holds nothing a browser could present.

Two implementations behind one interface, chosen like the policy cache: Redis when configured (several
workers share sessions), in-process otherwise. Each page keeps its sessions apart (its own cookie, its own
key namespace, its own session type): a patient's session is never one the professionals' page reads.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Protocol

COOKIE = "__Host-epr-portal"  # __Host-: Secure, Path=/, no Domain — the browser enforces all three


@dataclass(frozen=True)
class PageSession:
    """What every page's session holds. `role` is empty until sign-in completes (an OIDC login in flight
    keeps its state, nonce and PKCE verifier here, never in the cookie). A page's own session type adds
    who signed in (each field with a default: a session starts before anyone signs in)."""

    csrf: str
    created: float
    last_seen: float
    role: str = ""
    lang: str = ""
    login: dict = field(default_factory=dict)  # OIDC: state, nonce, code_verifier, redirect_uri

    @property
    def signed_in(self) -> bool:
        return bool(self.role)


class SessionStore(Protocol):
    def load(self, session_id: str) -> PageSession | None: ...
    def save(self, session_id: str, session: PageSession) -> None: ...
    def delete(self, session_id: str) -> None: ...


def _key(session_id: str, namespace: str) -> str:
    return f"epr:{namespace}:session:" + hashlib.sha256(session_id.encode()).hexdigest()


class InProcessSessions:
    """One worker: sessions in memory (lost on restart, which signs everyone out: acceptable)."""

    def __init__(self, *, absolute_seconds: int, namespace: str = "portal"):
        self._sessions: dict[str, PageSession] = {}
        self._lock = threading.Lock()
        self._absolute = absolute_seconds
        self._namespace = namespace

    def load(self, session_id: str) -> PageSession | None:
        with self._lock:
            return self._sessions.get(_key(session_id, self._namespace))

    def save(self, session_id: str, session: PageSession) -> None:
        with self._lock:
            now = time.time()
            # Drop what has outlived the absolute timeout, so memory stays bounded by live sessions.
            for key in [k for k, s in self._sessions.items() if now - s.created > self._absolute]:
                del self._sessions[key]
            self._sessions[_key(session_id, self._namespace)] = session

    def delete(self, session_id: str) -> None:
        with self._lock:
            self._sessions.pop(_key(session_id, self._namespace), None)


class RedisSessions:
    """Several workers: sessions in Redis, expiring with the absolute timeout at the latest."""

    def __init__(self, *, client, absolute_seconds: int, kind: type[PageSession], namespace: str = "portal"):
        self._redis = client
        self._absolute = absolute_seconds
        self._namespace = namespace
        self._kind = kind

    def load(self, session_id: str) -> PageSession | None:
        raw = self._redis.get(_key(session_id, self._namespace))
        return None if raw is None else self._kind(**json.loads(raw))

    def save(self, session_id: str, session: PageSession) -> None:
        remaining = max(1, int(self._absolute - (time.time() - session.created)))
        self._redis.set(_key(session_id, self._namespace), json.dumps(asdict(session)), ex=remaining)

    def delete(self, session_id: str) -> None:
        self._redis.delete(_key(session_id, self._namespace))


class Sessions:
    """The rules around the store: new ids, timeouts, sign-in with a fresh id (no session fixation)."""

    def __init__(self, *, store: SessionStore, idle_seconds: int, absolute_seconds: int,
                 kind: type[PageSession], clock: Callable[[], float] = time.time):
        self.store = store
        self.idle_seconds = idle_seconds
        self.absolute_seconds = absolute_seconds
        self.clock = clock
        self.kind = kind

    def start(self, **values) -> tuple[str, PageSession]:
        now = self.clock()
        session_id = secrets.token_urlsafe(32)
        session = self.kind(csrf=secrets.token_urlsafe(32), created=now, last_seen=now, **values)
        self.store.save(session_id, session)
        return session_id, session

    def current(self, session_id: str | None) -> PageSession | None:
        """The live session of this id, its idle clock restarted; None when unknown or timed out (and
        then deleted: a timed-out session never comes back)."""
        if not session_id:
            return None
        session = self.store.load(session_id)
        if session is None:
            return None
        now = self.clock()
        if now - session.last_seen > self.idle_seconds or now - session.created > self.absolute_seconds:
            self.store.delete(session_id)
            return None
        session = replace(session, last_seen=now)
        self.store.save(session_id, session)
        return session

    def update(self, session_id: str, session: PageSession) -> None:
        self.store.save(session_id, session)

    def sign_in(self, old_id: str | None, **identity) -> tuple[str, PageSession]:
        """Replace whatever session the browser had by a new one (new id, new CSRF token)."""
        lang = ""
        if old_id:
            previous = self.store.load(old_id)
            lang = previous.lang if previous else ""
            self.store.delete(old_id)
        return self.start(lang=lang, **identity)

    def end(self, session_id: str | None) -> None:
        if session_id:
            self.store.delete(session_id)


def session_store(settings, *, kind: type[PageSession], namespace: str = "portal") -> SessionStore:
    if settings.redis_url:
        from gateway.redis_client import redis_client

        return RedisSessions(client=redis_client(settings.redis_url, socket_timeout=2),
                             absolute_seconds=settings.portal_session_absolute_seconds, namespace=namespace,
                             kind=kind)
    return InProcessSessions(absolute_seconds=settings.portal_session_absolute_seconds, namespace=namespace)
