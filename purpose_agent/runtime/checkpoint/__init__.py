"""Stores for runs. Pick one with :func:`open_checkpointer` or construct a backend.

=========================  ===========================================================
``memory://``              :class:`InMemoryCheckpointer` — tests, throwaway runs
``jsonl:///dir``           :class:`JSONLCheckpointer` — plain files, one journal per run
``sqlite:///path.db``      :class:`SQLiteCheckpointer` — the embedded default
``path.db`` / ``.sqlite``  SQLite too
``postgresql://…``         :class:`~purpose_agent.runtime.checkpoint.postgres.PostgresCheckpointer`
                           — many processes and hosts (``pip install 'purpose-agent[postgres]'``)
=========================  ===========================================================
"""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint._base import BaseCheckpointer, validate_run_id
from purpose_agent.runtime.checkpoint._protocol import Checkpointer
from purpose_agent.runtime.checkpoint.jsonl import JSONLCheckpointer
from purpose_agent.runtime.checkpoint.memory import InMemoryCheckpointer
from purpose_agent.runtime.checkpoint.sqlite import SQLiteCheckpointer

DEFAULT_DB = ".purpose_agent/runs.db"
ENV_VAR = "PURPOSE_AGENT_DB"


def default_url() -> str:
    """``$PURPOSE_AGENT_DB`` if set, else SQLite at ``./.purpose_agent/runs.db``."""
    return os.environ.get(ENV_VAR) or DEFAULT_DB


def open_checkpointer(url: str | os.PathLike[str] | None = None) -> BaseCheckpointer:
    """Open the store a URL names (``None``: :func:`default_url`).

    Accepts ``memory://``, ``jsonl:///dir``, ``sqlite:///path`` (with an optional
    ``?synchronous=NORMAL``), a plain path ending in ``.db`` / ``.sqlite`` / ``.sqlite3``,
    or ``postgresql://`` / ``postgres://`` (the ``postgres`` extra).
    """
    text = os.fspath(url) if url is not None else default_url()
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return InMemoryCheckpointer()
    if scheme == "jsonl":
        return JSONLCheckpointer(_path_of(parts.netloc, parts.path, text))
    if scheme in ("sqlite", "sqlite3"):
        options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        sync = options.pop("synchronous", "FULL").upper()
        if sync not in ("FULL", "NORMAL", "EXTRA", "OFF"):
            raise StoreError(f"synchronous={sync!r} in {text!r}: use FULL (survives a power "
                             "cut, the default) or NORMAL (survives a process crash)")
        if options:
            raise StoreError(f"unknown option(s) {sorted(options)} in {text!r}; "
                             "the SQLite store accepts ?synchronous=FULL|NORMAL")
        return SQLiteCheckpointer(_path_of(parts.netloc, parts.path, text),
                                  synchronous=sync)  # type: ignore[arg-type]
    if scheme in ("postgresql", "postgres"):
        # Imported here: psycopg is an extra, and the core must import without it.
        from purpose_agent.runtime.checkpoint.postgres import PostgresCheckpointer

        return PostgresCheckpointer(text)
    if not scheme and Path(text).suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return SQLiteCheckpointer(text)
    raise StoreError(
        f"cannot tell which store {text!r} names; use memory://, jsonl:///dir, "
        "sqlite:///path.db or a path ending in .db"
    )


def _path_of(netloc: str, path: str, text: str) -> str:
    # Like file:// URLs: sqlite:///abs/x.db is /abs/x.db; sqlite://rel/x.db is rel/x.db.
    if not netloc + path:
        raise StoreError(f"{text!r} names no path")
    return netloc + path


__all__ = [
    "BaseCheckpointer",
    "Checkpointer", "InMemoryCheckpointer", "JSONLCheckpointer", "SQLiteCheckpointer",
    "default_url", "open_checkpointer", "validate_run_id",
]
