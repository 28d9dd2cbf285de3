"""Stores for runs. Pick one with :func:`open_checkpointer` or construct a backend.

===============================  ================================================="""

from __future__ import annotations

import os

from purpose_agent.runtime.checkpoint._arguments import FINISHED
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer, validate_run_id
from purpose_agent.runtime.checkpoint._url import StoreURL, parse_store_url
from purpose_agent.runtime.checkpoint.jsonl import JSONLCheckpointer
from purpose_agent.runtime.checkpoint.memory import InMemoryCheckpointer
from purpose_agent.runtime.checkpoint.sqlite import SQLiteCheckpointer

# The store contract's earlier name (a Protocol); the contract is BaseCheckpointer now.
Checkpointer = BaseCheckpointer

DEFAULT_DB = ".purpose_agent/runs.db"
ENV_VAR = "PURPOSE_AGENT_DB"


def default_url() -> str:
    """``$PURPOSE_AGENT_DB`` if set, else SQLite at ``./.purpose_agent/runs.db``."""
    return os.environ.get(ENV_VAR) or DEFAULT_DB


def open_checkpointer(url: str | os.PathLike[str] | None = None, *,
                      read_only: bool = False) -> BaseCheckpointer:
    """Open the store a URL names (``None``: :func:`default_url`).

    Accepts ``memory://``, ``sqlite:///relative.db`` / ``sqlite:////absolute.db`` (with an
    optional ``?synchronous=NORMAL``), ``sqlite:///:memory:``, ``jsonl:///dir`` (relative)
    / ``jsonl:////dir`` (absolute) or a plain path ending in ``.db`` / ``.sqlite`` /
    ``.sqlite3``, or ``postgresql://`` / ``postgres://`` (the ``postgres`` extra).
    Relative paths are relative to the working directory.

    A writable store (the default) is created, or upgraded, if needed. ``read_only=True``
    opens an existing store for reading only and never creates or changes a file:
    StoreNotFound when there is none, StoreError when the file is not a purpose-agent
    store; stores in read-only directories and files can be read.
    """
    parsed = parse_store_url(url if url is not None else default_url())
    if parsed.kind == "postgresql":
        # Imported here: psycopg is an extra, and the core must import without it.
        from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

        return PostgresCheckpointer(parsed.url)
    if parsed.kind == "memory" or (parsed.kind == "jsonl" and parsed.path is None):
        return InMemoryCheckpointer()
    if parsed.kind == "jsonl":
        assert parsed.path is not None
        return JSONLCheckpointer(parsed.path, read_only=read_only)
    sync = parsed.options.get("synchronous", "FULL")
    return SQLiteCheckpointer(parsed.path if parsed.path is not None else ":memory:",
                              synchronous=sync,  # type: ignore[arg-type]
                              read_only=read_only and parsed.path is not None)


__all__ = [
    "FINISHED", "BaseCheckpointer",
    "Checkpointer", "InMemoryCheckpointer", "JSONLCheckpointer", "SQLiteCheckpointer",
    "StoreURL", "default_url", "open_checkpointer", "parse_store_url", "validate_run_id",
]
