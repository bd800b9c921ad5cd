"""Which errors say the metadata database is out of reach (meta/outage.py):
silence, refusals, a server shutting down, starting up or full, raw from
asyncpg or wrapped by SQLAlchemy; and which do not."""

from __future__ import annotations

import asyncpg
import pytest
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects.postgresql import asyncpg as sa_asyncpg

from jointcloud.meta.outage import outage


def wrapped(error: Exception) -> sa_exc.DBAPIError:
    """``error`` as SQLAlchemy raises it from asyncpg."""
    dbapi = sa_asyncpg.AsyncAdapt_asyncpg_dbapi(asyncpg)
    try:
        sa_asyncpg.AsyncAdapt_asyncpg_connection._handle_exception_no_connection(dbapi, error)
    except Exception as translated:
        return sa_exc.DBAPIError.instance("SELECT 1", {}, translated, dbapi.Error)
    raise AssertionError("not translated")


@pytest.mark.parametrize(
    ("error", "says"),
    [
        (TimeoutError(), "did not answer within 30 s"),
        (ConnectionRefusedError(111, "Connect call failed"), "cannot reach"),
        (asyncpg.ConnectionDoesNotExistError("connection was closed"), "out of service"),
        (
            asyncpg.CannotConnectNowError("the database system is shutting down"),
            "out of service (the database system is shutting down)",
        ),
        (
            asyncpg.CannotConnectNowError("the database system is starting up"),
            "out of service (the database system is starting up)",
        ),
        (asyncpg.AdminShutdownError("terminating connection"), "out of service"),
        (asyncpg.TooManyConnectionsError("sorry, too many clients already"), "out of service"),
    ],
)
def test_out_of_reach_raw_and_wrapped(error: Exception, says: str) -> None:
    found = outage(error, 30)
    assert found is not None and says in found.message
    if isinstance(error, asyncpg.PostgresError):
        found = outage(wrapped(error), 30)
        assert found is not None and says in found.message


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.UniqueViolationError("duplicate key value"),
        asyncpg.QueryCanceledError("canceling statement due to lock timeout"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("not a database error"),
    ],
)
def test_other_errors_are_not_outages(error: Exception) -> None:
    assert outage(error, 30) is None
    if isinstance(error, asyncpg.PostgresError):
        assert outage(wrapped(error), 30) is None
