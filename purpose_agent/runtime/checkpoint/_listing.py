"""A run listing (:class:`RunQuery`) as SQL conditions, for the stores that speak SQL.

The conditions narrow what a store reads; the base still applies the whole query to
what comes back (``sort_infos``), so a condition a dialect cannot express exactly (a
flow name inside PostgreSQL's header text) is left to the base, never approximated.
Every value is bound as a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from purpose_agent.runtime.journal import RunInfo, RunQuery

# PostgreSQL: ties ordered by code point, as Python orders them (not the locale).
_ORDER = {"sqlite": "run_id", "postgres": 'run_id COLLATE "C"'}


def conditions(query: RunQuery, dialect: str, *, keyed: bool = True,
               ) -> tuple[list[str], list[Any]]:
    """SQL conditions on the ``runs`` table (columns ``status``, ``updated_at``,
    ``run_id``, ``header``) and their parameters, for ``query``'s filters: its status,
    id search, cursor (unless ``keyed`` is False: rows whose ``updated_at`` is not the
    listing's) and, on SQLite, its flow."""
    mark = "?" if dialect == "sqlite" else "%s"
    where: list[str] = []
    params: list[Any] = []
    if query.status is not None:
        where.append(f"status = {mark}")
        params.append(str(query.status))
    if query.search is not None and _encodable(query.search):
        where.append(f"instr(run_id, {mark}) > 0" if dialect == "sqlite"
                     else f"strpos(run_id, {mark}) > 0")
        params.append(query.search)
    if query.flow is not None and dialect == "sqlite" and _encodable(query.flow):
        # SQLite's JSON functions read escaped lone surrogates; PostgreSQL's refuse a
        # whole header holding one, so there the base filters flows.
        where.append(f"json_extract(header, '$.flow') = {mark}")
        params.append(query.flow)
    if query.after is not None and keyed:  # its run id is UTF-8 (check_after)
        run_id = _ORDER[dialect]
        where.append(f"(updated_at < {mark} OR (updated_at = {mark} AND {run_id} < {mark}))")
        params += [query.after[0], query.after[0], query.after[1]]
    return where, params


def _encodable(text: str) -> bool:
    """Whether a driver can bind ``text`` (a lone surrogate cannot be sent as UTF-8):
    a value that cannot is left to the base's filter, which matches it exactly."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def order_by(dialect: str) -> str:
    return f" ORDER BY updated_at DESC, {_ORDER[dialect]} DESC"


def scan(read_page: Callable[[RunQuery], list[RunInfo]], query: RunQuery,
         chunk: int = 500) -> Iterable[RunInfo]:
    """The runs ``query`` wants, read ``chunk`` listings at a time in listing order
    through ``read_page`` (which applies what it can of a query, in SQL) until
    ``query.limit`` of them matched: for a filter the SQL cannot apply."""
    found = 0
    page_query = replace(query, limit=chunk)
    while True:
        page = read_page(page_query)
        for info in page:
            if query.matches(info):
                found += 1
                yield info
        if len(page) < chunk or (query.limit is not None and found >= query.limit):
            return
        page_query = replace(page_query, after=RunQuery.key(page[-1]))


__all__ = ["conditions", "order_by", "scan"]
