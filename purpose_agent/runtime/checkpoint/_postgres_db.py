"""The PostgreSQL store's schema, its connection settings and its errors.

Everything lives in one PostgreSQL schema (``purpose_agent`` unless told otherwise), so
the store can share a database with an application, or with other stores under other
schema names. Statements name their tables through that schema, quoted; every value is
a bound parameter.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit

import psycopg

from purpose_agent.errors import SchemaVersionError, StoreError
from purpose_agent.runtime.checkpoint._postgres_messages import MESSAGES_SCHEMA
from purpose_agent.runtime.queue._postgres import QUEUE_SCHEMA

SCHEMA_VERSION = 3
DEFAULT_SCHEMA = "purpose_agent"
_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_OPTIONS = ("schema",)  # query options the store reads itself; the rest go to libpq

# ``{s}`` is the quoted schema name. No ';' inside a statement (the text is split on it).
SCHEMA = """
CREATE TABLE IF NOT EXISTS {s}.meta (key text PRIMARY KEY, value text NOT NULL);
-- One row per run: its current header, where its journal has got to (next_seq,
-- version), and its lease. Every write of a run locks this row first (FOR UPDATE), so
-- writers of one run take turns and its seqs stay contiguous whoever writes.
-- lease_expires_at is epoch seconds on the database's clock.
CREATE TABLE IF NOT EXISTS {s}.runs (
    run_id text PRIMARY KEY,
    status text NOT NULL,
    updated_at double precision NOT NULL,
    header text NOT NULL,
    next_seq bigint NOT NULL,
    version bigint NOT NULL,
    owner text,
    lease_expires_at double precision,
    fence bigint NOT NULL DEFAULT 0,
    cancel_requested boolean NOT NULL DEFAULT false);
CREATE INDEX IF NOT EXISTS runs_by_update ON {s}.runs (updated_at);
-- The event log, one row per event. body is the event as strict (ASCII) JSON text: text,
-- not jsonb, since jsonb refuses the escaped lone surrogates and NULs runs may hold.
CREATE TABLE IF NOT EXISTS {s}.events (
    run_id text NOT NULL, seq bigint NOT NULL, kind text NOT NULL, body text NOT NULL,
    PRIMARY KEY (run_id, seq));
-- One row per state commit: its delta's operations and the run's header after it.
CREATE TABLE IF NOT EXISTS {s}.states (
    run_id text NOT NULL, version bigint NOT NULL, step bigint NOT NULL, node text,
    ops text NOT NULL, header text NOT NULL, PRIMARY KEY (run_id, version));
CREATE TABLE IF NOT EXISTS {s}.snapshots (
    run_id text NOT NULL, version bigint NOT NULL, body text NOT NULL,
    PRIMARY KEY (run_id, version));
-- Durable steps and human answers: the latest record of a key wins.
CREATE TABLE IF NOT EXISTS {s}.steps (
    run_id text NOT NULL, key text NOT NULL, step bigint NOT NULL, body text NOT NULL,
    PRIMARY KEY (run_id, key));
CREATE INDEX IF NOT EXISTS steps_by_step ON {s}.steps (run_id, step)
"""

# From version N to N + 1. Schema 2 adds the run queue's tables (QUEUE_SCHEMA, created
# with the rest) and the QUEUED status, which an earlier version cannot read.
# Schema 3 adds the runs' mailboxes (MESSAGES_SCHEMA, created with the rest).
UPGRADES: dict[int, list[str]] = {1: [], 2: []}


def check_schema_name(name: str) -> str:
    """``name`` if it is a plain lower-case PostgreSQL identifier, else a StoreError."""
    if not _NAME.fullmatch(name):
        raise StoreError(f"schema name {name!r} is not allowed: use lower-case letters, "
                         "digits and _ (starting with a letter or _, at most 63)")
    return name


def split_url(url: str) -> tuple[str, dict[str, str]]:
    """The libpq connection string of ``url`` and the store's own options taken out of it."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        return url, {}  # a key=value conninfo string: libpq reads it as it is
    query = parse_qsl(parts.query, keep_blank_values=True)
    options = {k: v for k, v in query if k in _OPTIONS}
    rest = [(k, v) for k, v in query if k not in _OPTIONS]
    return _unsplit(parts._replace(query=urlencode(rest, safe="/"))), options


def redact_url(url: str) -> str:
    """``url`` without its password (in the user part or as ``?password=``)."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("postgresql", "postgres"):
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", ":***@", 1)
    query = [(k, "***" if k == "password" else v)
             for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return _unsplit(parts._replace(netloc=netloc, query=urlencode(query, safe="/*")))


def _unsplit(parts: SplitResult) -> str:
    # Not urlunsplit: it drops the '//' of an empty host (postgresql:///db?host=/socket/dir).
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}"


_CHECK_LOGIN = "check the user name and password (in the URL, $PGPASSWORD or ~/.pgpass)"
_CREATE_DB = "create the database (createdb NAME) or fix its name in the URL"
_IS_IT_UP = "is the server running, and are the host and port (or socket) right?"
# By SQLSTATE, when the error carries one (a server that accepted the connection and
# then refused it, e.g. through PgBouncer, sends the code with its message).
_BY_SQLSTATE = {
    "28P01": _CHECK_LOGIN,  # invalid_password
    "28000": _CHECK_LOGIN,  # invalid_authorization_specification: no such role, pg_hba
    "3D000": _CREATE_DB,  # invalid_catalog_name
}


def connect_error(exc: psycopg.Error, where: str) -> StoreError:
    """A one-line StoreError for a failed connection attempt, saying what to check."""
    text = " ".join(str(exc).split())
    hint = _BY_SQLSTATE.get(exc.sqlstate or "") or _connect_hint(exc, text.lower())
    return StoreError(f"cannot connect to the PostgreSQL store {where}: {text} ({hint})")


def _connect_hint(exc: psycopg.Error, low: str) -> str:
    if isinstance(exc, psycopg.errors.ConnectionTimeout) or "timeout" in low \
            or "timed out" in low:
        return "is the server running, and reachable from here (host, port, firewall)?"
    # libpq refuses a login before any session exists: psycopg (3.3) then raises a plain
    # OperationalError without a SQLSTATE, and the server's message is all there is.
    if "password" in low and ("authentication failed" in low or "no password" in low):
        return _CHECK_LOGIN
    if "role" in low and "does not exist" in low:
        return "check the user name in the URL"
    if "database" in low and "does not exist" in low:
        return _CREATE_DB
    if any(s in low for s in ("refused", "no such file", "could not translate",
                              "resolve host", "host")):
        return _IS_IT_UP
    return "check the URL and that the server accepts connections from here"


def store_error(exc: BaseException, where: str) -> StoreError:
    """A StoreError for a failed statement or lost connection."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, psycopg.errors.LockNotAvailable):
        hint = "another writer held the run longer than the lock timeout; retry"
    elif isinstance(exc, psycopg.errors.DiskFull):
        hint = "the server's disk is full; free space and retry"
    elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
        hint = "the user lacks a privilege on the store's schema"
    elif isinstance(exc, psycopg.OperationalError):
        hint = "the connection failed; is the server up? earlier commits are intact"
    else:
        hint = "earlier commits are intact"
    return StoreError(f"PostgreSQL store {where}: {text} ({hint})")


def create_schema(conn: psycopg.Connection[Any], schema: str, where: str) -> None:
    """Create or check the store's tables; a newer schema is refused, left untouched."""
    s = f'"{schema}"'
    with conn.transaction():
        if _found_version(conn, s) == SCHEMA_VERSION:
            return  # the common case: nothing to lock or create
        # Several processes may open a new database at once: CREATE ... IF NOT EXISTS
        # is not safe against itself, so they take turns (a transaction-scoped lock,
        # nothing kept in the session).
        conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (f"purpose_agent:{schema}",))
        found = _found_version(conn, s)
        if found is not None and found > SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the PostgreSQL store {where} (schema {schema!r}) was written by a newer "
                f"purpose-agent (schema version {found}, this version reads up to "
                f"{SCHEMA_VERSION}); upgrade purpose-agent to open it"
            )
        if found == SCHEMA_VERSION:
            return
        if conn.execute("SELECT to_regnamespace(%s)", (s,)).fetchone() == (None,):
            conn.execute(f"CREATE SCHEMA {s}")
        if found is not None:
            for version in range(found, SCHEMA_VERSION):
                for statement in UPGRADES[version]:
                    conn.execute(statement.format(s=s))
        for statement in (SCHEMA + ";" + QUEUE_SCHEMA + ";" + MESSAGES_SCHEMA).format(s=s).split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"INSERT INTO {s}.meta VALUES ('schema_version', %s) ON CONFLICT (key) "
                     "DO UPDATE SET value = EXCLUDED.value", (str(SCHEMA_VERSION),))


def _found_version(conn: psycopg.Connection[Any], s: str) -> int | None:
    if conn.execute("SELECT to_regclass(%s)", (f"{s}.meta",)).fetchone() == (None,):
        return None
    row = conn.execute(f"SELECT value FROM {s}.meta WHERE key = 'schema_version'").fetchone()
    return int(row[0]) if row is not None else None
