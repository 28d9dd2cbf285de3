"""Telling damage from data: the checks every store runs on what it reads back.

A store only ever reads back what it wrote, so anything else — text that is not JSON, a
record of the wrong shape, a run whose seqs or versions have a gap — is damage (a disk
error, a hand edit, a bad restore). Damage is never skipped: skipping a journal record
silently drops a node's update or an event, and whatever resumes the run then builds on
a state that never was. It raises :class:`StoreCorrupted`, naming where it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from purpose_agent.errors import StoreCorrupted
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.state import RunStatus

# What decoding a damaged record raises: from json, from a missing key, from a value of
# the wrong type or out of range.
DAMAGE = (KeyError, TypeError, ValueError, AttributeError, IndexError)

_STATUSES = frozenset(str(status) for status in RunStatus)
_NUMBER = (int, float)
# The header fields a store relies on, with the types they may hold; others are checked
# when present (a header written by a newer version may carry more).
_REQUIRED = ("run_id", "status", "current_step", "created_at", "updated_at")
_TYPES: dict[str, tuple[type, ...]] = {
    "run_id": (str,), "session_id": (str, type(None)), "status": (str,),
    "purpose": (str,), "flow": (str, type(None)), "flow_ref": (str, type(None)),
    "current_node": (str, type(None)), "current_step": (int,),
    "max_steps": (int, type(None)), "pending": (dict, type(None)),
    "error": (dict, type(None)), "parent": (dict, type(None)),
    "created_at": _NUMBER, "updated_at": _NUMBER,
}


def corrupted(where: str, what: str) -> StoreCorrupted:
    """The error for damage at ``where`` (a file and line, a run and row)."""
    return StoreCorrupted(
        f"{where}: {what}. The store is damaged there; nothing was skipped and nothing "
        "more is written to this run: restore the store from a backup (or delete the run)"
    )


def describe(exc: BaseException) -> str:
    """What a decoding error says about the record, in a few words."""
    if isinstance(exc, KeyError):
        return f"it has no {exc} field"
    return f"{type(exc).__name__}: {exc}"


def decode_all(texts: Sequence[Any], where: Callable[[int], str]) -> list[Any]:
    """Decode JSON ``texts`` (as :func:`jsonutil.loads_many`), or raise StoreCorrupted
    naming ``where(i)`` for the first one that is not JSON text."""
    try:
        return list(jsonutil.loads_many(texts))
    except (ValueError, TypeError):
        pass
    for index, text in enumerate(texts):
        if not isinstance(text, str):
            raise corrupted(where(index), f"it holds a {type(text).__name__}, not JSON text")
        try:
            jsonutil.loads(text)
        except ValueError as exc:
            raise corrupted(where(index), f"it is not JSON ({exc})") from None
    raise AssertionError("loads_many refused texts that decode one by one")  # pragma: no cover


def header_problem(header: Any, run_id: str) -> str | None:
    """Why ``header`` cannot be run ``run_id``'s header, or None if it can."""
    if type(header) is not dict:
        return f"its header is a {type(header).__name__}, not an object"
    for name in _REQUIRED:
        if name not in header:
            return f"its header has no {name!r}"
    for name, value in header.items():
        kinds = _TYPES.get(name)
        if kinds is not None and type(value) not in kinds:
            return f"its header's {name!r} is {value!r}, not a {kinds[0].__name__}"
    if header["run_id"] != run_id:
        return f"its header belongs to run {header['run_id']!r}"
    if header["status"] not in _STATUSES:
        return f"its header's status {header['status']!r} is not a run status"
    return None


def state_problem(data: Any, run_id: str) -> str | None:
    """Why ``data`` cannot be a stored state of run ``run_id``, or None if it can."""
    problem = header_problem(data, run_id)
    if problem is not None:
        return problem.replace("its header", "the state")
    for name, kind in (("data", dict), ("completed_nodes", list), ("node_states", dict),
                       ("tool_cache", dict)):
        if name in data and type(data[name]) is not kind:
            return f"the state's {name!r} is a {type(data[name]).__name__}, not a {kind.__name__}"
    return None


_STEP_FIELDS: dict[str, type] = {"key": str, "step": int, "node": str, "index": int,
                                 "name": str, "kind": str, "status": str}


def step_problem(data: Any) -> str | None:
    """Why ``data`` cannot be a journaled step record, or None if it can."""
    if type(data) is not dict:
        return f"a step record is a {type(data).__name__}, not an object"
    for name, kind in _STEP_FIELDS.items():
        if type(data.get(name)) is not kind:
            return (f"a step record's {name!r} is {data.get(name)!r}, not a "
                    f"{kind.__name__}")
    return None


def checked_header(header: Any, run_id: str, where: Callable[[], str]) -> dict[str, Any]:
    """``header`` (decoded from JSON text if it is text) if it is run ``run_id``'s
    header, else StoreCorrupted naming ``where()``."""
    if isinstance(header, str):
        try:
            header = jsonutil.loads(header)
        except ValueError as exc:
            raise corrupted(where(), f"the run's header is not JSON ({exc})") from None
    problem = header_problem(header, run_id)
    if problem is not None:
        raise corrupted(where(), problem)
    return header  # type: ignore[no-any-return]


def seq_gap(expected: int, found: Any) -> str:
    """What an event seq that is not the next one means."""
    if type(found) is not int:
        return f"an event has seq {found!r} where seq {expected} was expected"
    if found < expected:
        return f"event seq {found} appears again where seq {expected} was expected"
    missing = f"seq {expected}" + (f" to {found - 1} are" if found > expected + 1 else " is")
    return f"event seq {found} follows seq {expected - 1}: {missing} missing"


def version_gap(expected: int, found: Any) -> str:
    """What a state version that is not the next one means."""
    if type(found) is not int:
        return f"a state commit has version {found!r} where version {expected} was expected"
    if found < expected:
        return f"state version {found} appears again where version {expected} was expected"
    missing = f"version {expected}" + (f" to {found - 1} are" if found > expected + 1
                                        else " is")
    return f"state version {found} follows version {expected - 1}: {missing} missing"


__all__ = ["DAMAGE", "checked_header", "corrupted", "decode_all", "describe", "header_problem",
           "seq_gap", "state_problem", "step_problem", "version_gap"]
