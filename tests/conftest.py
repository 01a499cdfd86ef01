"""Shared fixtures: a real gateway on real SQLite (and PostgreSQL when available),
the real spool channel, and a simulated clock.

PostgreSQL tests use ``RUSSAK_TEST_POSTGRES_URL`` (a server URL whose user may create
databases); each test gets a fresh database. Without it they skip locally and fail
under ``CI=true``, so CI can never pass by quietly not testing PostgreSQL.
"""

from __future__ import annotations

import functools
import os
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from gateway.app import open_gateway
from gateway.clock import SimulatedClock
from gateway.config import load_settings
from gateway.context import Gateway
from tests.factories import write_config

# The suite is checked at other dates with Debian's ``faketime`` (see the README). Run it
# as ``FAKETIME_DONT_FAKE_MONOTONIC=1 faketime -f '@2027-05-17 12:00:00' …``: a step of
# the wall clock does not move the monotonic clock in production either, and with a
# shifted monotonic clock CPython's timed lock waits never return (sem_clockwait is not
# intercepted). libfaketime 0.9.10 then answers clock_nanosleep with EINVAL, so under
# faketime ``time.sleep`` waits on an event instead. Processes the tests start run on
# the real clock (libfaketime is not passed on): what they do must not depend on the
# day, and the tests pin time through the injected clock.
if "faketime" in os.environ.get("LD_PRELOAD", ""):
    if os.environ.get("FAKETIME_DONT_FAKE_MONOTONIC") == "1":
        time.sleep = lambda seconds: threading.Event().wait(max(0.0, seconds)) and None  # type: ignore[assignment]
    for _name in ("LD_PRELOAD", "FAKETIME", "FAKETIME_DONT_FAKE_MONOTONIC"):
        os.environ.pop(_name, None)

PG_URL = os.environ.get("RUSSAK_TEST_POSTGRES_URL")
IN_CI = os.environ.get("CI", "").lower() == "true"
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # a Monday, 09:00 in Oslo


def require_server(available: bool, what: str) -> None:
    """Skip with a reason when a server is missing, but fail in CI."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{what} is required in CI but not available")
    pytest.skip(f"{what} not available (set it up as .ci/run does)")


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock(START)


def _postgres_database() -> Iterator[str]:
    require_server(bool(PG_URL), "PostgreSQL (RUSSAK_TEST_POSTGRES_URL)")
    assert PG_URL is not None
    from sqlalchemy import create_engine, text

    name = f"russak_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        # UTF-8 whatever the cluster's default: a cluster initialised without a locale
        # (as on a bare CI machine) defaults to SQL_ASCII, where psycopg cannot send "å".
        conn.execute(
            text(f"CREATE DATABASE \"{name}\" TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'")
        )
    base, _, _ = PG_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'russak.db'}"
    else:
        yield from _postgres_database()


@pytest.fixture
def sqlite_only_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'russak.db'}"


def build_gateway(directory: Path, database: str, clock: SimulatedClock, **config: object) -> Gateway:
    path = write_config(directory, database=database, **config)  # type: ignore[arg-type]
    return open_gateway(load_settings(path), clock=clock, migrate=True)


@pytest.fixture
def gw(tmp_path: Path, database_url: str, clock: SimulatedClock) -> Iterator[Gateway]:
    """A migrated gateway on each database backend."""
    gateway = build_gateway(tmp_path / "gw", database_url, clock)
    yield gateway
    gateway.close()


@pytest.fixture
def gw_sqlite(tmp_path: Path, sqlite_only_url: str, clock: SimulatedClock) -> Iterator[Gateway]:
    gateway = build_gateway(tmp_path / "gw", sqlite_only_url, clock)
    yield gateway
    gateway.close()


# The CLI tests' site and runner (tests/test_cli*.py). Imported here, not at the top:
# tests.test_cli imports START from this module.


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """``russak init --dir TMP/site``: its russak.toml."""
    from tests.test_cli import init_site

    return init_site(tmp_path)


@pytest.fixture
def russak(clock: SimulatedClock) -> Any:
    """``russak --config CFG ARGS`` in-process on ``clock`` (``tests.test_cli.invoke``)."""
    from tests.test_cli import invoke

    return functools.partial(invoke, clock)
