"""Strict JSON: the only serialisation purpose-agent uses for anything it stores.

``dumps`` refuses what plain :mod:`json` would silently mangle — sets, arbitrary
objects, NaN and Infinity, and non-string dict keys (``{1: .., True: ..}`` would be
merged into one key) — with a :class:`SerializationError` naming the key path, before
anything is written. Text is written ASCII-escaped, so strings holding lone surrogates
(which LLMs emit) survive every store and read back identical; a high and a low
surrogate held as two separate characters are refused, since JSON can only store them
as the escape pair every reader decodes as one character. ``loads`` only builds
dicts, lists and scalars: a dict that looks like some serializer's envelope is a dict.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Iterator
from json.encoder import encode_basestring_ascii
from typing import Any

from purpose_agent.errors import SerializationError

_SCALARS = (str, bool, int, type(None))
MAX_DEPTH = 500  # the C encoder recurses; far deeper values fail there anyway
_encoder = json.JSONEncoder(ensure_ascii=True, allow_nan=False, separators=(",", ":"))
_decoder = json.JSONDecoder()
# A high surrogate followed by a low one, as two separate characters: JSON can only
# write them as the escape pair that every decoder reads back as one character.
_SPLIT_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _not_json(obj: Any) -> Any:
    raise TypeError(f"a {type(obj).__name__} is not JSON")


# JSONEncoder.encode builds a C encoder on every call, a third of the cost of encoding
# a small event; this one is built once. Values reach it only after check(). (The C
# accelerator is private to json, and absent where the C module is: hence getattr.)
c_make_encoder: Any = getattr(json.encoder, "c_make_encoder", None)
_c_encode = (c_make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",",
                            False, False, False) if c_make_encoder is not None else None)


def _simple(obj: Any, depth: int = 0) -> bool:
    """True for the common case, cheaply: exact dicts, lists and tuples of ASCII strings,
    ints, bools, None and finite floats, nested at most MAX_DEPTH deep (counted from
    ``depth``). False means "not sure": check() then walks the value with its full rules
    (and names the offending path). Bounding the depth here too makes check()'s verdict
    independent of how deep the caller's own stack is."""
    if depth > MAX_DEPTH:
        return False
    kind = type(obj)
    if kind is dict:
        for key in obj:
            if type(key) is not str or not key.isascii():
                return False
        items = obj.values()
    elif kind is list or kind is tuple:
        items = obj
    else:
        items = (obj,)
    for item in items:
        kind = type(item)
        if kind is str:
            if not item.isascii():
                return False
        elif kind is int or kind is bool or item is None:
            continue
        elif kind is float:
            if item - item != 0.0:  # inf and nan
                return False
        elif kind is dict or kind is list or kind is tuple:
            if not _simple(item, depth + 1):
                return False
        else:
            return False
    return True


def check(value: Any, path: str = "$", depth: int = 0) -> None:
    """Raise :class:`SerializationError` unless ``value`` is strict JSON.

    The error names the first offending key path, e.g. ``$.items[2].tags``. ``depth`` is
    how deep the value will sit in what is stored (an event's payload sits one level down
    in the event): the depth bound applies to the stored whole, so a value that passes
    here is never refused later by the encoding of its container.
    """
    try:
        if _simple(value, depth):
            return
    except RecursionError:
        pass
    # An explicit stack instead of recursion: deeply nested LLM output must not hit
    # the recursion limit. The depth bound also stops a circular structure.
    stack: list[tuple[Any, str, int]] = [(value, path, depth)]
    while stack:
        obj, where, depth = stack.pop()
        kind = type(obj)
        if depth > MAX_DEPTH:
            raise SerializationError(
                f"{where}: nested more than {MAX_DEPTH} levels deep (or circular); JSON "
                "encoders cannot write it back, flatten it first", path=where)
        if kind in _SCALARS:
            if kind is str and _SPLIT_PAIR.search(obj):
                raise _split_pair(where)
            continue
        if kind is float:
            if not math.isfinite(obj):
                raise SerializationError(
                    f"{where}: {obj!r} is not valid JSON; store None or a string instead",
                    path=where,
                )
            continue
        if kind is dict:
            for key, item in obj.items():
                if type(key) is not str:
                    raise SerializationError(
                        f"{where}: dict key {key!r} is a {type(key).__name__}, JSON keys "
                        "must be strings; convert the keys with str() first",
                        path=where,
                    )
                if not key.isascii() and _SPLIT_PAIR.search(key):
                    raise _split_pair(where)
                if type(item) not in _SCALARS or (type(item) is str and not item.isascii()):
                    stack.append((item, f"{where}.{key}", depth + 1))
            continue
        if kind is list or kind is tuple:
            for index, item in enumerate(obj):
                if type(item) not in _SCALARS or (type(item) is str and not item.isascii()):
                    stack.append((item, f"{where}[{index}]", depth + 1))
            continue
        if isinstance(obj, (str, int)):  # str/int subclasses (StrEnum, IntEnum) encode fine
            continue
        if isinstance(obj, (float, dict, list, tuple)):
            stack.append((_plain(obj), where, depth))
            continue
        raise SerializationError(
            f"{where}: a {kind.__name__} is not JSON (purpose-agent stores JSON only); "
            "convert it to a dict, list, str, number, bool or None",
            path=where,
        )


def _split_pair(where: str) -> SerializationError:
    return SerializationError(
        f"{where}: text holds a surrogate pair as two separate characters; stored as JSON "
        "it would read back as the one character they encode, not identical. Join the "
        "pairs first: text.encode('utf-16-le', 'surrogatepass').decode('utf-16-le', "
        "'surrogatepass')",
        path=where,
    )


def dumps(value: Any, path: str = "$", depth: int = 0) -> str:
    """Encode ``value`` as compact, ASCII-only strict JSON, or raise before writing.
    ``depth``: as for :func:`check`."""
    check(value, path, depth)
    if _c_encode is None:
        return _encoder.encode(value)
    return "".join(_c_encode(value, 0))


def dumps_simple(value: Any) -> str | None:
    """``dumps(value)`` when the cheap check passes (the common case), else None: the
    caller then encodes through :func:`dumps`, which names what is wrong."""
    try:
        if _c_encode is None or not _simple(value):
            return None
    except RecursionError:
        return None
    return "".join(_c_encode(value, 0))


def text(value: str | None) -> str | None:
    """The JSON of an ASCII string (or None), as :func:`dumps` writes it; None when
    ``value`` needs the full check (non-ASCII text may hold a split surrogate pair)."""
    if value is None:
        return "null"
    if isinstance(value, str) and value.isascii():  # str enums (event kinds) too
        return encode_basestring_ascii(value)
    return None


def loads(text: str | bytes) -> Any:
    """Decode JSON text into plain dicts, lists and scalars; nothing is imported or called."""
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    return _decoder.decode(text)


def loads_many(texts: Iterable[str], chunk: int = 256) -> Iterator[Any]:
    """Decode many JSON texts, as :func:`loads` would one by one, ``chunk`` per parse.

    Reading a long run's history decodes thousands of small texts; parsing a few hundred
    as one array skips the per-call overhead of the decoder, and unlike one parse of
    everything, the values are used while still in the CPU's cache (measured on 10,000
    events: per text 61 ms, all in one parse 56 ms, 256 per parse 48 ms).
    """
    texts = list(texts)
    for start in range(0, len(texts), chunk):
        part = texts[start:start + chunk]
        values = _decoder.decode(f"[{','.join(part)}]")
        if len(values) != len(part):  # a damaged text holding several values: find it
            values = [loads(text) for text in part]
        yield from values


def _type_name(obj: Any) -> str:
    return f"<{type(obj).__module__}.{type(obj).__qualname__}>"


# canonical() keys every durable step (its arguments' digest) and shows its arguments: a
# C encoder built once, as json.dumps(value, sort_keys=True, ensure_ascii=True,
# separators=(",", ":"), default=_type_name) would build per call (~2 µs of each).
_c_canonical = (c_make_encoder(None, _type_name, encode_basestring_ascii, None, ":", ",",
                               True, False, True) if c_make_encoder is not None else None)


def canonical(value: Any, path: str = "$") -> str:
    """A stable text form of ``value`` for hashing (sorted keys; non-JSON objects by type).

    Step keys of journaled runs depend on it: its output must never change. A value it
    cannot write — dict keys that cannot be ordered (``{1: .., "a": ..}``) or are not
    str/int/float/bool/None, nesting deeper than :data:`MAX_DEPTH` levels, a circular
    reference — raises :class:`SerializationError` naming the key path."""
    if _c_canonical is not None:
        try:
            return "".join(_c_canonical(value, 0))
        except (RecursionError, ValueError, TypeError):
            pass  # circular, or keys that cannot be sorted: as json.dumps has it
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"),
                          default=_type_name)
    except (RecursionError, ValueError, TypeError) as exc:
        raise _canonical_error(value, path, exc) from None


_KEY_TYPES = (str, int, float, bool, type(None))


def _canonical_error(value: Any, path: str, exc: BaseException) -> SerializationError:
    """Why canonical() cannot write ``value``: the first place, walking as json does."""
    stack: list[tuple[Any, str, int]] = [(value, path, 0)]
    while stack:
        obj, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            shown = where if len(where) <= 120 else f"{where[:60]}…{where[-40:]}"
            return SerializationError(
                f"{shown}: nested more than {MAX_DEPTH} levels deep (or circular); flatten "
                "it, or pass a smaller value", path=where)
        if isinstance(obj, dict):
            keys = list(obj)
            for key in keys:
                if not isinstance(key, _KEY_TYPES):
                    return SerializationError(
                        f"{where}: dict key {key!r} is a {type(key).__name__}; use str keys",
                        path=where)
            try:
                sorted(keys)
            except TypeError:
                kinds = sorted({type(key).__name__ for key in keys})
                return SerializationError(
                    f"{where}: dict keys of different types ({', '.join(kinds)}) cannot be "
                    "put in order; use str keys (str(key))", path=where)
            stack.extend((item, f"{where}.{key}", depth + 1) for key, item in obj.items())
        elif isinstance(obj, (list, tuple)):
            stack.extend((item, f"{where}[{i}]", depth + 1) for i, item in enumerate(obj))
    return SerializationError(f"{path}: cannot be written as JSON ({exc})", path=path)


def _plain(obj: Any) -> Any:
    if isinstance(obj, float):
        return float(obj)
    if isinstance(obj, dict):
        return dict(obj)
    return list(obj)
