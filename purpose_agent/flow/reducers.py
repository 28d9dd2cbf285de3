"""Reducers: how a node's returned dict turns into operations on the run data.

Each key of a node's update replaces the run data's value, unless the flow declares a
reducer for it. The result is a delta of operations (see
:func:`purpose_agent.runtime.journal.apply_ops`) that a store can replay without this
code — a callable reducer is journaled as the value it produced.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from purpose_agent.errors import FlowDefinitionError

Reducer = str | Callable[[Any, Any], Any]
BUILTIN = ("append", "extend", "merge", "replace")


def check_reducers(reducers: Mapping[str, Reducer] | None) -> dict[str, Reducer]:
    out = dict(reducers or {})
    for key, reducer in out.items():
        if not callable(reducer) and reducer not in BUILTIN:
            raise FlowDefinitionError(
                f"reducer for {key!r} is {reducer!r}; use one of {', '.join(BUILTIN)} "
                "or a function (old, new) -> value"
            )
    return out


def to_ops(update: Mapping[str, Any], data: Mapping[str, Any],
           reducers: Mapping[str, Reducer]) -> dict[str, list[Any]]:
    """The delta operations for ``update`` applied to ``data``."""
    ops: dict[str, list[Any]] = {}
    for key, value in update.items():
        reducer = reducers.get(key, "replace")
        if reducer == "replace":
            ops[key] = ["set", value]
        elif reducer == "append":
            ops[key] = ["append", [value]]
        elif reducer == "extend":
            if not isinstance(value, (list, tuple)):
                raise TypeError(f"reducer 'extend' for {key!r} needs a list, got "
                                f"{type(value).__name__}")
            ops[key] = ["extend", list(value)]
        elif reducer == "merge":
            if not isinstance(value, dict):
                raise TypeError(f"reducer 'merge' for {key!r} needs a dict, got "
                                f"{type(value).__name__}")
            ops[key] = ["merge", value]
        else:
            ops[key] = ["set", reducer(data.get(key), value)]  # type: ignore[operator]
    return ops
