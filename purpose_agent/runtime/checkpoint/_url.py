"""Store URLs: what ``--db`` / ``$PURPOSE_AGENT_DB`` / :func:`open_checkpointer` accept.

One parser, used by every opener (the library and the command line), so a URL means the
same file everywhere. Paths follow the convention of SQLAlchemy, Django and
dj-database-url: after ``scheme://`` comes an empty host, then the path, so

=============================  ==================================================
``sqlite:///runs.db``          ``./runs.db``, relative to the working directory
``sqlite:////var/x/runs.db``   ``/var/x/runs.db``, absolute (four slashes)
``sqlite:///:memory:``         a SQLite database in memory
``jsonl:///journals``          ``./journals`` (a directory), ``jsonl:////abs/dir`` absolute
``jsonl:///:memory:``          in memory, like ``memory://``
``memory://``                  in memory
``runs.db``, ``/abs/runs.db``  a plain path ending in ``.db``, ``.sqlite`` or ``.sqlite3``
``postgresql://…``             PostgreSQL (also ``postgres://``), passed on as it is
=============================  ==================================================
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlsplit

from purpose_agent.errors import StoreError

StoreKind = Literal["memory", "sqlite", "jsonl", "postgresql"]

SQLITE_SUFFIXES = (".db", ".sqlite", ".sqlite3")
_SYNCHRONOUS = ("FULL", "NORMAL", "EXTRA", "OFF")
_FORMS = ("memory://, sqlite:///relative.db, sqlite:////absolute.db, jsonl:///dir, "
          "a path ending in .db, or postgresql://…")


@dataclass(frozen=True, slots=True)
class StoreURL:
    """A parsed store URL.

    ``path`` is the SQLite file or the JSONL directory, as written (relative paths are
    relative to the working directory), ``None`` in memory and for PostgreSQL;
    ``options`` are the query parameters (``synchronous`` for SQLite, passed on as they
    are for PostgreSQL); ``url`` is the text that was parsed.
    """

    kind: StoreKind
    path: Path | None
    options: dict[str, str] = field(default_factory=dict)
    url: str = ""

    @property
    def in_memory(self) -> bool:
        """True when the store lives and dies with the process that opens it."""
        return self.kind == "memory" or (self.kind in ("sqlite", "jsonl") and self.path is None)

    @property
    def is_file_store(self) -> bool:
        """True for a SQLite file or JSONL directory on this machine's disk."""
        return self.path is not None


def parse_store_url(url: str | os.PathLike[str]) -> StoreURL:
    """Parse a store URL (see the module's table); StoreError names what is wrong with one
    that cannot be used, and the forms that can. Nothing is opened or created."""
    text = os.fspath(url)
    parts = urlsplit(text)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return StoreURL("memory", None, url=text)
    if scheme in ("postgresql", "postgres"):
        return StoreURL("postgresql", None, dict(parse_qsl(parts.query)), url=text)
    if scheme in ("sqlite", "sqlite3", "jsonl"):
        kind: StoreKind = "jsonl" if scheme == "jsonl" else "sqlite"
        if parts.netloc:
            # sqlite://x.db has a host "x.db", not a path: SQLAlchemy refuses it too.
            raise StoreError(
                f"{text!r} names a host ({parts.netloc!r}); a {scheme} URL has three slashes "
                f"before a relative path ({scheme}:///{parts.netloc}{parts.path}) and four "
                f"before an absolute one ({scheme}:////abs/path)")
        path_text = parts.path[1:] if parts.path.startswith("/") else parts.path
        if not path_text:
            raise StoreError(f"{text!r} names no path; use {_FORMS}")
        options = _options(kind, parts.query, text)
        path = None if path_text == ":memory:" else Path(path_text)
        return StoreURL(kind, path, options, url=text)
    if not scheme and Path(text).suffix.lower() in SQLITE_SUFFIXES:
        return StoreURL("sqlite", Path(text), url=text)
    raise StoreError(f"cannot tell which store {text!r} names; use {_FORMS}")


def _options(kind: StoreKind, query: str, text: str) -> dict[str, str]:
    options = dict(parse_qsl(query, keep_blank_values=True))
    if kind == "jsonl":
        if options:
            raise StoreError(f"unknown option(s) {sorted(options)} in {text!r}; the JSONL "
                             "store takes none")
        return options
    unknown = sorted(set(options) - {"synchronous"})
    if unknown:
        raise StoreError(f"unknown option(s) {unknown} in {text!r}; "
                         "the SQLite store accepts ?synchronous=FULL|NORMAL")
    if "synchronous" in options:
        sync = options["synchronous"].upper()
        if sync not in _SYNCHRONOUS:
            raise StoreError(f"synchronous={sync!r} in {text!r}: use FULL (survives a power "
                             "cut, the default) or NORMAL (survives a process crash)")
        options["synchronous"] = sync
    return options


__all__ = ["SQLITE_SUFFIXES", "StoreKind", "StoreURL", "parse_store_url"]
