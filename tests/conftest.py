"""Fixtures shared by the whole suite: a real PostgreSQL server for the PostgreSQL store.

One throwaway cluster per test session (see pg_server.py); each test gets an empty store
(one schema emptied before each test; a fresh database per test would cost ~0.3 s). Without the server
binaries or psycopg the PostgreSQL tests are skipped, with the reason, on a developer's
machine, and fail in CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from pg_server import ENV_URL, Server, find_bindir, server_from_environment, start_cluster


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
        pytest.fail(f"CI must run the PostgreSQL tests, but {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Server]:
    """A PostgreSQL server: ``$PURPOSE_AGENT_TEST_PG``, else a cluster started here."""
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install -e '.[postgres]')")
    server = server_from_environment()
    if server is None:
        bindir = find_bindir()
        if bindir is None:
            _unavailable("no PostgreSQL server binaries (apt-get install postgresql, or set "
                         f"${ENV_URL} to a postgresql:// URL)")
            raise AssertionError("unreachable")
        server = start_cluster(bindir)
    yield server
    server.stop()


_TEST_SCHEMA = f"t_{uuid.uuid4().hex[:12]}"  # this session's, on a shared server too


@pytest.fixture
def pg_url(pg_server: Server) -> str:
    """The URL of an empty PostgreSQL store. One schema serves the session, emptied before
    each test: creating a schema's tables costs ~0.1 s, emptying them a few ms."""
    from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

    url = pg_server.url(schema=_TEST_SCHEMA)
    with PostgresCheckpointer(url) as cp:  # creates the schema the first time
        for run_id in cp.list_runs():
            cp.delete_run(run_id)
    return url


@pytest.fixture
def pg_new_url(pg_server: Server) -> str:
    """The URL of a PostgreSQL store in a schema nobody has used yet (no tables)."""
    return pg_server.url(schema=f"t_{uuid.uuid4().hex[:20]}")
