"""Fixtures shared by the whole suite: a real PostgreSQL server for the PostgreSQL store.

One throwaway cluster per test session (see pg_server.py); each test gets an empty store
(one schema emptied before each test; a fresh database per test would cost ~0.3 s). Without the server
binaries or psycopg the PostgreSQL tests are skipped, with the reason, on a developer's
machine, and fail in CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import compileall
import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg_server import ENV_URL, Server, find_bindir, server_from_environment, start_cluster


def pytest_configure(config: pytest.Config) -> None:
    """Compile purpose_agent (and the tests' helper modules) to bytecode once, up front.

    The suite starts well over a thousand interpreters (``purpose-agent`` commands, crash
    children, workers, MCP servers). Where ``PYTHONDONTWRITEBYTECODE`` is set (as in some
    containers and CI images) none of them saves what it compiles, so each compiled all of
    purpose_agent from source again: ~0.3 of the ~1 CPU-s a command takes. Installed
    packages come with their bytecode; the editable checkout has none until written here
    (``__pycache__``, ignored by git). What runs is unchanged: Python uses a compiled
    module only while its source's size and mtime match, else compiles the source.
    In the controller only: xdist's workers start after this.
    """
    if hasattr(config, "workerinput"):
        return
    import purpose_agent

    # Test modules are not: pytest rewrites and compiles those itself.
    tests = re.compile(r"(^|/)test_[^/]*\.py$")
    for directory, skip in ((Path(purpose_agent.__file__).parent, None),
                            (Path(__file__).parent, tests)):
        compileall.compile_dir(directory, rx=skip, quiet=2)  # a read-only tree: no harm


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
    each test: creating a schema's tables costs ~0.1 s, emptying them a few ms.

    Emptied with one TRUNCATE of every table but ``meta`` (the schema version), not one
    delete_run per run: after a test that wrote ten thousand runs, ten thousand fsynced
    transactions took ~30 s of the next test's setup."""
    import psycopg

    from purpose_agent.runtime.checkpoint._postgres_db import split_url
    from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

    url = pg_server.url(schema=_TEST_SCHEMA)
    with PostgresCheckpointer(url):  # creates the schema the first time
        pass
    with psycopg.connect(split_url(url)[0], autocommit=True) as conn:
        tables = [row[0] for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = %s AND tablename <> 'meta' "
            "ORDER BY tablename", (_TEST_SCHEMA,))]
        # A process a previous test left behind may still hold a lock: fail, don't hang.
        conn.execute("SET lock_timeout = '30s'")
        conn.execute("TRUNCATE " + ", ".join(f'"{_TEST_SCHEMA}"."{t}"' for t in tables))
        assert conn.execute(f'SELECT count(*) FROM "{_TEST_SCHEMA}".runs').fetchone() == (0,)
    return url


@pytest.fixture
def pg_new_url(pg_server: Server) -> str:
    """The URL of a PostgreSQL store in a schema nobody has used yet (no tables)."""
    return pg_server.url(schema=f"t_{uuid.uuid4().hex[:20]}")
