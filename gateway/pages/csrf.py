"""CSRF: every form carries the session's token; a POST without it, or with another, is refused.

Belt and braces with the SameSite=Strict cookie: a browser sends that cookie on same-site requests
only, and the token covers what SameSite does not (an older browser, a sibling sub-domain). The
Origin header, when the browser sends one, must be this origin too.
"""

from __future__ import annotations

import hmac

FIELD = "csrf_token"


def valid(expected: str, presented: str | None) -> bool:
    return bool(presented) and hmac.compare_digest(expected.encode(), presented.encode())


def same_origin(origin: str | None, public_origin: str) -> bool:
    """No Origin (some same-origin navigations omit it): rely on the token. Else it must be the gateway's
    public origin (`Settings.public_origin`), not whatever the request's Host header claims."""
    if not origin:
        return True
    return origin == public_origin
