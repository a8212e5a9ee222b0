"""Authentication: IUA access tokens (signed JWTs) from trusted issuers become a `Principal`.

Kept apart from the HTTP face so that the verifier can be tested with real signed tokens and no
server, and so that the one place that turns bytes into an identity is small enough to review.
"""
