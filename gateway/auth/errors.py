"""The two ways authentication can say no, kept distinct because they map to different answers (and
the development token endpoint's refusals, which answer in OAuth's terms).

`AuthenticationFailed` (401): we do not know who is calling (bad, expired or untrusted token).
`AccessRefused` (403): we know who is calling, and that caller may not act this way at all.

`reason` is a short message safe to show the client and to log: it names the failed check and
never contains the token or any part of it.
"""

from __future__ import annotations


class AuthenticationFailed(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class AccessRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TokenRequestRefused(Exception):
    """The development token endpoint's refusal, in OAuth 2.0 terms (RFC 6749 §5.2): `error` is the
    registered code (invalid_request, invalid_client, unsupported_grant_type, invalid_scope, RFC 8707's
    invalid_target), `status` 400 or 401 (invalid_client). The description never repeats a credential."""

    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{error}: {description}")
        self.status = status
        self.error = error
        self.reason = description
