"""What only the PostgreSQL store has: its URL, connection errors, schema version, and
its promises to PgBouncer. The store contract itself runs on it through conftest.BACKENDS."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid

import pytest

from purpose_agent.errors import RunBusyError, SchemaVersionError, StoreError
from purpose_agent.runtime.checkpoint import open_checkpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit, Delta
from purpose_agent.runtime.state import RunState, RunStatus

# psycopg and the PostgreSQL store are imported inside the tests: without them, every
# test here is skipped (or fails in CI) through the pg_server fixture, not at import.


def _schema_of(url: str) -> str:
    return url.rsplit("schema=", 1)[1]


def _admin(pg_server, sql: str, params: tuple = ()) -> list[tuple]:
    import psycopg

    with psycopg.connect(pg_server.base_url, autocommit=True) as conn:
        cur = conn.execute(sql, params)
        return cur.fetchall() if cur.description else []


def test_both_url_schemes_open_the_postgres_store(pg_url):
    from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

    for url in (pg_url, pg_url.replace("postgresql://", "postgres://", 1)):
        with open_checkpointer(url) as cp:
            assert isinstance(cp, PostgresCheckpointer)
            assert cp.schema == _schema_of(pg_url)
            cp.save_event(create_event("r1", EventKind.NODE_PROGRESS))
    with open_checkpointer(pg_url) as cp:
        assert [e.seq for e in cp.list_events("r1")] == [1, 2]


def test_the_store_lives_in_its_own_schema_and_a_second_schema_is_another_store(pg_server):
    first, second = (pg_server.url(schema=f"s_{uuid.uuid4().hex[:12]}") for _ in range(2))
    with open_checkpointer(first) as a, open_checkpointer(second) as b:
        a.save_snapshot("r1", RunState(run_id="r1"))
        assert a.list_runs() == ["r1"] and b.list_runs() == []
    tables = _admin(pg_server, "SELECT table_name FROM information_schema.tables "
                               "WHERE table_schema = %s ORDER BY 1", (_schema_of(first),))
    assert [t for (t,) in tables] == ["events", "messages", "meta", "queue", "runs",
                                      "snapshots", "states", "steps", "workers"]


def test_a_bad_schema_name_is_refused_before_connecting(pg_server):
    from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

    with pytest.raises(StoreError, match="schema name"):
        PostgresCheckpointer("postgresql://nobody@127.0.0.1:1/x?schema=a;drop")


def test_repr_and_errors_never_show_the_password(pg_server):
    url = "postgresql://someone:s3cret-pw@127.0.0.1:1/db?connect_timeout=2"
    with pytest.raises(StoreError) as err:
        open_checkpointer(url)
    assert "s3cret" not in str(err.value) and "someone" in str(err.value)
    with open_checkpointer(pg_server.url(password="s3cret-pw", schema="p_repr")) as cp:
        assert "s3cret" not in repr(cp) and "p_repr" in repr(cp)


def _one_line(err: pytest.ExceptionInfo[StoreError]) -> str:
    text = str(err.value)
    assert "\n" not in text
    return text


def test_an_unreachable_server_is_a_one_line_store_error(pg_server, tmp_path):
    with pytest.raises(StoreError) as err:
        open_checkpointer(f"postgresql:///db?host={tmp_path}")  # no server on that socket
    assert "is the server running" in _one_line(err)
    with pytest.raises(StoreError) as err:
        open_checkpointer("postgresql://u@127.0.0.1:1/db")  # nothing listens on port 1
    assert "is the server running" in _one_line(err)


def test_a_missing_database_is_a_one_line_store_error(pg_server):
    with pytest.raises(StoreError) as err:
        open_checkpointer(pg_server.url("no_such_db"))
    assert "createdb" in _one_line(err) and "no_such_db" in str(err.value)


def test_a_wrong_password_is_a_one_line_store_error(pg_server):
    if pg_server.directory is None:
        pytest.skip("needs the session's own cluster (its pg_hba checks passwords)")
    role = f"r_{uuid.uuid4().hex[:8]}"
    _admin(pg_server, f"CREATE ROLE {role} LOGIN PASSWORD 'right-one'")
    url = pg_server.url(schema="p_pw").replace("user=postgres", f"user={role}")
    with pytest.raises(StoreError) as err:
        open_checkpointer(url + "&password=wrong-one")
    assert "password" in _one_line(err) and "wrong-one" not in str(err.value)
    _admin(pg_server, f"GRANT CREATE ON DATABASE postgres TO {role}")
    with open_checkpointer(url + "&password=right-one") as cp:
        assert cp.list_runs() == []


def test_a_store_written_by_a_newer_version_is_refused_and_left_untouched(pg_server,
                                                                           pg_new_url):
    pg_url = pg_new_url
    with open_checkpointer(pg_url) as cp:
        cp.save_snapshot("r1", RunState(run_id="r1", data={"x": 1}))
    schema = _schema_of(pg_url)
    _admin(pg_server, f'UPDATE "{schema}".meta SET value = %s', ("99",))
    before = _admin(pg_server, f'SELECT run_id, header FROM "{schema}".runs')
    with pytest.raises(SchemaVersionError, match="newer purpose-agent"):
        open_checkpointer(pg_url)
    assert _admin(pg_server, f'SELECT value FROM "{schema}".meta') == [("99",)]
    assert _admin(pg_server, f'SELECT run_id, header FROM "{schema}".runs') == before


def test_processes_opening_a_new_store_at_once_all_succeed(pg_new_url):
    pg_url = pg_new_url
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def open_one() -> None:
        start.wait()
        try:
            open_checkpointer(pg_url).close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_no_server_side_prepared_statement_is_ever_made(pg_url):
    """PgBouncer in transaction mode: a prepared statement would be on another server
    connection by the next transaction. psycopg prepares after 5 runs unless told not to."""
    with open_checkpointer(pg_url) as cp:
        for i in range(12):
            state = RunState(run_id="r1", status=RunStatus.RUNNING, current_step=i)
            cp.commit("r1", Commit(events=[create_event("r1", EventKind.NODE_PROGRESS)],
                                   state=state, delta=Delta({"i": ["set", i]}, node="n")))
            cp.load_latest("r1")
            cp.list_events("r1")
        with cp._pool.connection() as conn:
            assert conn.execute("SELECT count(*) FROM pg_prepared_statements"
                                ).fetchone() == (0,)


def test_the_core_imports_without_psycopg():
    code = (
        "import sys, tempfile\n"
        "import purpose_agent\n"
        "from purpose_agent.runtime.checkpoint import open_checkpointer\n"
        "open_checkpointer('sqlite:///' + tempfile.mkdtemp() + '/x.db').close()\n"
        "assert not [m for m in sys.modules if m.startswith('psycopg')], sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_list_runs_by_status_is_injection_safe(pg_url):
    with open_checkpointer(pg_url) as cp:
        cp.save_snapshot("r1", RunState(run_id="r1"))
        cp.save_event(create_event("r1", EventKind.NODE_PROGRESS))
        injection = "x' OR '1'='1"
        with pytest.raises(ValueError, match="unknown run status"):
            cp.list_runs(status=injection)  # refused before any SQL, on every store
        assert cp.list_events("r1", kinds=[injection]) == []
        assert [e.seq for e in cp.list_events("r1", kinds=["agent.progress", injection])] == [1]


def test_leases_are_judged_and_set_on_the_database_clock(pg_url, monkeypatch):
    """This process's clock is an hour fast: a store using it would take a live owner's
    run (its lease looks expired) and grant leases an hour too long."""
    with open_checkpointer(pg_url) as cp:
        cp.save_snapshot("r1", RunState(run_id="r1", status=RunStatus.RUNNING))
        held = cp.acquire_lease("r1", "other-host.example:4242", 60)
        with cp._pool.connection() as conn:
            db_now = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8"
                                  ).fetchone()[0]
        assert db_now <= held.expires_at - 60 + 5
        real = time.time
        monkeypatch.setattr(time, "time", lambda: real() + 3600)
        with pytest.raises(RunBusyError):
            cp.acquire_lease("r1", "me:1", 30)
        renewed = cp.renew_lease(held, 60)
        assert renewed.expires_at < real() + 120
        result = cp.commit("r1", Commit(acquire=("other-host.example:4242", 30)))
        assert result.lease is not None and result.lease.expires_at < real() + 120


def test_without_psycopg_a_postgres_url_says_which_extra_to_install():
    code = (
        "import sys\n"
        "sys.modules['psycopg'] = None  # as if it were not installed\n"
        "from purpose_agent.errors import StoreError\n"
        "from purpose_agent.runtime.checkpoint import open_checkpointer\n"
        "try:\n"
        "    open_checkpointer('postgresql://someone@db.example/agents')\n"
        "except StoreError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "pip install 'purpose-agent[postgres]'" in out
