"""What an exception means for a caller that answers each member of a batch on its own (the HL7 v2
bridge's group commit): a failure of a dependency of the gateway (the store, the ledger, Redis, the
keys) — every member may be sent again later — or something in one member's content that the code
below could not take (an impossible date deep in a parser, a value a column refuses, ValueError or
TypeError from mapping or sealing): that member's own refusal, and never its neighbours'.

Anything else (AttributeError, RuntimeError…) is the gateway's own fault: neither the sender's
content nor a dependency; the member is answered "try again" and the error logged, so nothing is
lost while it is fixed.
"""

from __future__ import annotations

from collections.abc import Iterator

from redis.exceptions import RedisError
from sqlalchemy import exc as sql

from adapters.cara.crypto import DecryptionFailed, KeyringError
from adapters.cara.dates import InvalidDate
from adapters.cara.errors import StoreUnavailable

DEPENDENCY_FAILURES = (OSError, MemoryError, RedisError, StoreUnavailable, KeyringError, DecryptionFailed,
                       sql.OperationalError, sql.InterfaceError, sql.DisconnectionError, sql.TimeoutError)
# InvalidDate is the gateway's one "impossible date" (dates.py); it is no ValueError, so it is named here.
CONTENT_FAILURES = (ValueError, TypeError, ArithmeticError, LookupError, InvalidDate, sql.DataError,
                    sql.IntegrityError)
_CHAIN = 8  # causes followed: a dependency failure is often re-raised as another exception


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen = 0
    while error is not None and seen < _CHAIN:
        yield error
        error = error.__cause__ or error.__context__
        seen += 1


def is_dependency_failure(error: BaseException) -> bool:
    """A dependency failed (anywhere in the error's causes): every member may succeed when sent again."""
    return any(isinstance(e, DEPENDENCY_FAILURES) for e in _chain(error))


def is_content_failure(error: BaseException) -> bool:
    """The member's content could not be taken: its refusal (AE), not a failure of the gateway."""
    if is_dependency_failure(error):
        return False
    if isinstance(error, sql.StatementError) and not isinstance(error, (sql.DataError, sql.IntegrityError)):
        return isinstance(error.orig, CONTENT_FAILURES)  # a value the driver could not bind
    return isinstance(error, CONTENT_FAILURES)


def where_raised(error: BaseException) -> str:
    """file:line of the innermost frame, for the log: the error's own words may quote content."""
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is None:
        return "?"
    return f"{frame.tb_frame.f_code.co_filename.rsplit('/', 1)[-1]}:{frame.tb_lineno}"
