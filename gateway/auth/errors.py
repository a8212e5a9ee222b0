"""The two ways authentication can say no, kept distinct because they map to different answers.

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
