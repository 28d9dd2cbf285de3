"""Fixtures shared by the whole suite: a real PostgreSQL server for the PostgreSQL store.

One throwaway cluster per test session (see pg_server.py); each test gets an empty store
(one schema emptied before each test; a fresh database per test would cost ~0.3 s). Without the server
binaries or psycopg the PostgreSQL tests are skipped, with the reason, on a developer's
machine, and fail in CI (``CI=true``), where they must run.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator

import pytest
from pg_server import ENV_URL, Server, find_bindir, server_from_environment, start_cluster

_BYTECODE_CACHE = "_purpose_agent_bytecode_cache"


def pytest_configure(config: pytest.Config) -> None:
    """Let the Python processes the tests start reuse compiled bytecode.

    The suite starts well over a thousand interpreters (``purpose-agent`` commands, crash
    children, workers). Where ``PYTHONDONTWRITEBYTECODE`` is set (as in some containers
    and CI images) each of them compiled purpose_agent, typer, rich, psycopg... from
    source again: ~0.4 CPU-s of a ~1 s command. They share one bytecode cache of this
    run's instead, outside the source tree (``PYTHONPYCACHEPREFIX``), removed at the end.
    What runs is unchanged: a cached module is used only while its source's size and
    mtime match, and each test writes its own modules under its own tmp_path.
    Runs before xdist starts its workers, which inherit the environment.
    """
    if not os.environ.get("PYTHONDONTWRITEBYTECODE") or os.environ.get("PYTHONPYCACHEPREFIX"):
        return  # bytecode is already cached next to the sources, or where the user said
    prefix = tempfile.mkdtemp(prefix="pa-pycache-")
    setattr(config, _BYTECODE_CACHE, prefix)
    os.environ.pop("PYTHONDONTWRITEBYTECODE")
    os.environ["PYTHONPYCACHEPREFIX"] = prefix


def pytest_unconfigure(config: pytest.Config) -> None:
    prefix = getattr(config, _BYTECODE_CACHE, None)
    if prefix is not None:
        shutil.rmtree(prefix, ignore_errors=True)


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
