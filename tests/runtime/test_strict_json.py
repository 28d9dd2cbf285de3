"""Rule 6: stores hold strict JSON only, refuse anything else up front, and load data."""

from __future__ import annotations

import json
import math
import os
import re
from decimal import Decimal
from itertools import count

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from purpose_agent.errors import SerializationError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.events import EventKind, PAEvent, create_event
from purpose_agent.runtime.journal import Commit, Delta, StepRecord
from purpose_agent.runtime.state import RunState

NOT_JSON = {
    "set": {1, 2},
    "frozenset": frozenset({"a"}),
    "object": object(),
    "bytes": b"raw",
    "decimal": Decimal("1.5"),
    "nan": math.nan,
    "inf": math.inf,
    "-inf": -math.inf,
    "int-key": {1: "a"},
    "bool-key": {True: "b"},
    "int-and-str-keys": {"x": 0, 1: "a", "1": "b"},
    "none-key": {None: 1},
    "tuple-key": {(1, 2): "x"},
}
SURROGATES = ["\ud800", "a\udfffb", "\udc80\ud800", "emoji \U0001f600 and \ud83d alone"]
ENVELOPES = [
    {"__class__": "os.system", "lc": 1, "type": "constructor", "id": ["os", "system"]},
    {"lc": 1, "type": "constructor", "id": ["os", "system"], "kwargs": {"command": "id"}},
    {"py/object": "os.system", "py/reduce": [{"py/function": "os.system"}, ["id"]]},
    {"__reduce__": ["os.system", ["id"]], "$type": "System.Diagnostics.Process"},
]


def _run_with_history(store) -> dict:
    state = RunState(run_id="r1", data={"good": [1, 2]})
    store.save_snapshot("r1", state)
    store.save_event(create_event("r1", EventKind.NODE_PROGRESS, ok=True))
    return state.to_dict()


def _unchanged(store, snapshot: dict) -> None:
    assert store.load_latest("r1").to_dict() == snapshot
    assert [e.seq for e in store.list_events("r1")] == [1]
    assert len(store.list_history("r1")) == 1


# ── refused, with the key path, before anything is written ─────────────────────


@pytest.mark.parametrize("bad", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_a_non_json_value_in_state_is_refused_with_its_path(store, bad):
    before = _run_with_history(store)
    state = RunState(run_id="r1", data={"items": [0, "one", bad], "other": 1})
    with pytest.raises(SerializationError) as err:
        store.save_snapshot("r1", state)
    assert err.value.path == "$.state.data.items[2]"
    assert "$.state.data.items[2]" in str(err.value)
    _unchanged(store, before)


@pytest.mark.parametrize("bad", list(NOT_JSON.values()), ids=list(NOT_JSON))
def test_a_non_json_value_in_a_delta_or_event_is_refused(store, bad):
    before = _run_with_history(store)
    state = RunState(run_id="r1", current_step=1)
    with pytest.raises(SerializationError, match=r"\$\.update\.ops\.x\[1\]\[0\]"):
        store.commit("r1", Commit(state=state, delta=Delta(ops={"x": ["append", [bad]]}, node="a"),
                                  events=[create_event("r1", EventKind.NODE_COMPLETED)]))
    with pytest.raises(SerializationError, match=r"payload\.detail\.v"):
        store.save_event(PAEvent(run_id="r1", kind=EventKind.STEP_COMPLETED,
                                 payload={"detail": {"v": bad}}))
    with pytest.raises(SerializationError, match=r"\$\.steps\.search\.result"):
        store.commit("r1", Commit(steps=[StepRecord("k", 1, "a", 0, "search", result=bad)]))
    _unchanged(store, before)
    assert store.load_steps("r1", 1) == []


def test_create_event_refuses_a_bad_payload_where_it_is_built():
    with pytest.raises(SerializationError, match=r"\$\.payload\.tags") as err:
        create_event("r1", EventKind.STEP_STARTED, tags={"a", "b"})
    assert err.value.path == "$.payload.tags"


def test_plain_json_would_merge_non_string_keys_but_we_refuse_them():
    assert json.loads(json.dumps({1: "a", "1": "b"})) == {"1": "b"}  # what we avoid
    assert json.loads(json.dumps({True: "a", "true": "b"})) == {"true": "b"}
    with pytest.raises(SerializationError, match="dict key 1 is a int") as err:
        jsonutil.dumps({"m": {1: "a", "1": "b"}})
    assert err.value.path == "$.m"
    with pytest.raises(SerializationError, match="dict key True is a bool"):
        jsonutil.dumps({"m": [{True: "a"}]})


def test_the_first_bad_value_deep_in_nested_data_is_named():
    value = {"a": [{"b": {"c": [1, 2, {"d": object()}]}}]}
    with pytest.raises(SerializationError) as err:
        jsonutil.dumps(value)
    assert err.value.path == "$.a[0].b.c[2].d"


def test_serialization_error_is_a_type_error_too():
    with pytest.raises(TypeError):
        jsonutil.dumps({"x": {1}})


def test_deeply_nested_data_is_checked_without_recursion():
    value: list = []
    inner = value
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    inner.append({1})
    with pytest.raises(SerializationError, match=r"\[0\]\[0\]"):
        jsonutil.check(value)


# ── what is accepted ────────────────────────────────────────────────────────────


def test_tuples_are_stored_as_lists(store):
    state = RunState(run_id="r1", data={"pair": (1, "two"), "nested": [(3, (4,))]})
    store.save_snapshot("r1", state)
    assert store.load_latest("r1").data == {"pair": [1, "two"], "nested": [[3, [4]]]}


def test_str_and_int_enums_and_subclasses_store_as_their_values(store):
    state = RunState(run_id="r1", data={"kind": EventKind.STEP_STARTED, "big": 2**80,
                                        "neg": -0.0, "tiny": 5e-324})
    store.save_snapshot("r1", state)
    data = store.load_latest("r1").data
    assert data == {"kind": "step.started", "big": 2**80, "neg": 0.0, "tiny": 5e-324}
    assert type(data["kind"]) is str and type(data["big"]) is int


@pytest.mark.parametrize("text", SURROGATES)
def test_lone_surrogates_read_back_identical(store, text):
    state = RunState(run_id="r1", data={"reply": text, text: [text]}, purpose=text)
    store.save_snapshot("r1", state)
    store.commit("r1", Commit(state=state, delta=Delta(ops={"more": ["set", text]}, node="a"),
                              steps=[StepRecord("k", 0, "a", 0, "llm", result=text)]))
    store.save_event(create_event("r1", EventKind.MODEL_RESPONSE, node="a", text=text))
    loaded = store.load_latest("r1")
    assert loaded.data == {"reply": text, text: [text], "more": text}
    assert loaded.purpose == text
    assert store.list_events("r1")[0].payload == {"text": text}
    assert store.load_steps("r1", 0)[0].result == text
    assert store.run_info("r1").purpose == text


@pytest.mark.parametrize("where", ["value", "key", "list"])
def test_a_surrogate_pair_held_as_two_characters_is_refused_not_merged(store, where):
    split = "smile \ud83d\ude00"  # two code points; JSON would read back one: "\U0001f600"
    assert jsonutil.loads(json.dumps(split)) != split  # what plain json would do
    before = _run_with_history(store)
    data = {"value": {"reply": split}, "key": {"reply": {split: 1}},
            "list": {"reply": ["ok", split]}}[where]
    with pytest.raises(SerializationError, match="surrogate pair") as err:
        store.save_snapshot("r1", RunState(run_id="r1", data=data))
    assert err.value.path == {"value": "$.state.data.reply", "key": "$.state.data.reply",
                              "list": "$.state.data.reply[1]"}[where]
    _unchanged(store, before)
    joined = split.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    store.save_snapshot("r1", RunState(run_id="r1", data={"reply": joined + "\ud800"}))
    assert store.load_latest("r1").data == {"reply": "smile \U0001f600\ud800"}


def test_stored_text_is_ascii_so_surrogates_cannot_break_the_encoding():
    text = jsonutil.dumps({"s": "\ud800", "e": "é"})
    assert text.isascii()
    assert jsonutil.loads(text) == {"s": "\ud800", "e": "é"}


@pytest.mark.parametrize("envelope", ENVELOPES)
def test_a_dict_shaped_like_a_serializer_envelope_is_just_a_dict(store, monkeypatch, envelope):
    def forbidden(*args: object) -> None:
        raise AssertionError("loading called os.system")

    monkeypatch.setattr(os, "system", forbidden)
    state = RunState(run_id="r1", data={"payload": envelope, "list": [envelope]})
    store.save_snapshot("r1", state)
    store.save_event(PAEvent(run_id="r1", kind=EventKind.STEP_COMPLETED, payload=dict(envelope)))
    loaded = store.load_latest("r1")
    assert loaded.data == {"payload": envelope, "list": [envelope]}
    assert type(loaded.data["payload"]) is dict
    assert store.list_events("r1")[0].payload == envelope


# ── property: any JSON value round-trips through every backend ──────────────────

_text = st.text(st.one_of(st.characters(exclude_categories=()),
                          st.sampled_from(["\ud800", "\udbff", "\udc00", "\udfff"])),
                max_size=12)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=5)
    | st.dictionaries(_text, children, max_size=5),
    max_leaves=25,
)
_ids = count()


_SPLIT_PAIR = re.compile("[\ud800-\udbff][\udc00-\udfff]")


def _holds_split_pair(value) -> bool:
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _SPLIT_PAIR.search(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


@settings(max_examples=60, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=json_values)
def test_any_json_value_round_trips_identically(store, value):
    run_id = f"prop-{next(_ids)}"
    if _holds_split_pair(value):  # the one text JSON cannot keep identical: refused
        with pytest.raises(SerializationError, match="surrogate pair"):
            store.save_snapshot(run_id, RunState(run_id=run_id, data={"v": value}))
        assert store.load_latest(run_id) is None
        return
    store.save_snapshot(run_id, RunState(run_id=run_id, data={"v": value}))
    store.save_event(create_event(run_id, EventKind.NODE_PROGRESS, v=value))
    loaded = store.load_latest(run_id).data["v"]
    # Compare the exact encoding too: == alone would accept True for 1 or 1.0 for 1.
    assert loaded == value
    assert jsonutil.dumps(loaded) == jsonutil.dumps(value)
    assert jsonutil.dumps(store.list_events(run_id)[0].payload["v"]) == jsonutil.dumps(value)


def test_circular_and_absurdly_deep_values_are_refused_not_looped_on() -> None:
    from purpose_agent.runtime import jsonutil

    loop: list = []
    loop.append(loop)
    with pytest.raises(SerializationError, match="circular"):
        jsonutil.dumps({"x": loop})
    deep: list = []
    for _ in range(4 * jsonutil.MAX_DEPTH):
        deep = [deep]
    with pytest.raises(SerializationError, match="levels deep"):
        jsonutil.dumps(deep)


_texts = st.one_of(st.none(), st.text(max_size=8), st.sampled_from(SURROGATES))


@settings(max_examples=200)
@given(node=_texts, kind=st.one_of(st.sampled_from(list(EventKind)), st.text(max_size=8)),
       payload=st.dictionaries(st.text(max_size=4), json_values, max_size=3),
       ts=st.one_of(st.floats(), st.integers()), seq=st.integers(0, 2**40))
def test_an_event_encodes_as_its_dict_would(node, kind, payload, ts, seq):
    """PAEvent.to_json builds the common case's text itself: it must write exactly what
    dumps(to_dict()) writes, and refuse exactly what it refuses."""
    event = PAEvent("r1", kind, seq=seq, node=node, payload=payload, ts=ts)
    try:
        expected = jsonutil.dumps(event.to_dict())
    except SerializationError:
        with pytest.raises(SerializationError):
            event.to_json()
        return
    assert event.to_json() == expected


def test_a_forked_child_draws_event_ids_of_its_own():
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report one id and leave at once
        os.write(write, PAEvent("r1", EventKind.NODE_PROGRESS).event_id.encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    mine = PAEvent("r1", EventKind.NODE_PROGRESS).event_id
    assert len(child) == len(mine) == 32
    assert child[:16] != mine[:16], "the child must not reuse the parent's id prefix"


def _canonical_reference(value):
    """canonical() as first written: step keys of journaled runs hash this text."""
    return json.dumps(value, sort_keys=True, ensure_ascii=True, separators=(",", ":"),
                      default=lambda obj: f"<{type(obj).__module__}.{type(obj).__qualname__}>")


_anything = st.recursive(
    st.one_of(json_values, st.floats(), st.sampled_from(SURROGATES), st.binary(max_size=3),
              st.builds(object), st.sets(st.integers(), max_size=2)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.tuples(inner, inner),
                            st.dictionaries(st.text(max_size=3), inner, max_size=3),
                            st.dictionaries(st.integers(), inner, max_size=3)),
    max_leaves=12)


@settings(max_examples=300)
@given(value=_anything)
def test_canonical_text_never_changes(value):
    assert jsonutil.canonical(value) == _canonical_reference(value)


def test_canonical_refuses_what_json_dumps_refuses_naming_the_key_path():
    circular: list = []
    circular.append(circular)
    deep: list = []
    tip = deep
    for _ in range(10_000):
        tip.append([])
        tip = tip[0]
    cases = [
        (circular, r"\$\[0\]\[0\].*circular", "$" + "[0]" * 501),
        ({"args": [deep]}, r"\$\.args\[0\]\[0\].*nested more than 500", None),
        ({1: "a", "b": 2}, r"^\$: dict keys of different types \(int, str\)", "$"),
        ([{"k": {"opts": {2: 1, "a": 0}}}], r"^\$\[0\]\.k\.opts: dict keys", "$[0].k.opts"),
        ({"x": {(1, 2): 0}}, r"^\$\.x: dict key \(1, 2\) is a tuple", "$.x"),
    ]
    for value, message, path in cases:
        with pytest.raises(SerializationError, match=message) as caught:
            jsonutil.canonical(value)
        assert path is None or caught.value.path == path
    assert isinstance(caught.value, TypeError), "as json.dumps raised for such keys"


@example(value="result_json")  # the field's name as data: no substring test can tell
@example(value={"result_json": ["result_json"]})
@settings(max_examples=100)
@given(value=json_values)
def test_a_step_record_with_its_result_encoded_already_stores_the_same(value):
    if _holds_split_pair(value):
        return
    rec = StepRecord(key="1/a/s/x/0", step=1, node="a", index=0, name="s", result=value)
    plain = rec.to_json()
    shown = repr(rec)
    rec.result_json = jsonutil.dumps(value)
    spliced = rec.to_json()
    stored = json.loads(spliced)
    assert stored == json.loads(plain)
    assert sorted(stored) == sorted(rec.to_dict()), "the record's fields, and no result_json"
    assert StepRecord.from_dict(stored) == rec
    assert repr(rec) == shown, "the encoded result is not part of the record's repr"
