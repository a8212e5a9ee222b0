"""Which failures are a member's content (its own AE) and which a dependency's (try again, for all)."""

import pytest
from redis.exceptions import ConnectionError as RedisDown
from sqlalchemy.exc import DataError, IntegrityError, OperationalError, StatementError

from adapters.cara.errors import StoreUnavailable
from gateway.exchanges.audit_commit import AuditUnavailable
from gateway.exchanges.failures import is_content_failure, is_dependency_failure, where_raised


def raised_from(error: Exception, cause: Exception) -> Exception:
    try:
        try:
            raise cause
        except Exception:
            raise error  # noqa: B904 - the implicit context is what is tested
    except Exception as chained:
        return chained


@pytest.mark.parametrize("error", [
    ValueError("month must be in 1..12"), UnicodeEncodeError("utf-8", "x", 0, 1, "surrogate"), TypeError("x"),
    OverflowError("x"), KeyError("x"), DataError("INSERT", {}, Exception("value too long")),
    IntegrityError("INSERT", {}, Exception("null value")), StatementError("bind", "INSERT", {}, ValueError("x")),
])
def test_content_failures(error):
    assert is_content_failure(error) and not is_dependency_failure(error)


@pytest.mark.parametrize("error", [
    OSError("disk full"), ConnectionRefusedError(), OperationalError("SELECT", {}, Exception("database is locked")),
    StoreUnavailable("down"), AuditUnavailable("ledger"), RedisDown("gone"), MemoryError(),
    raised_from(ValueError("while reconnecting"), OSError("connection reset")),
])
def test_dependency_failures(error):
    assert is_dependency_failure(error) and not is_content_failure(error)


@pytest.mark.parametrize("error", [AttributeError("a bug"), RuntimeError("a bug"), AssertionError(),
                                   StatementError("bind", "INSERT", {}, RuntimeError("x"))])
def test_the_gateways_own_faults_are_neither(error):
    assert not is_content_failure(error) and not is_dependency_failure(error)


def test_where_raised_names_file_and_line_not_the_words():
    try:
        int("Muster")
    except ValueError as error:
        where = where_raised(error)
    assert where.startswith("test_exchanges_failures.py:") and "Muster" not in where
