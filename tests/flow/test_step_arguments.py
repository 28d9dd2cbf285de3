"""Step arguments that cannot be keyed fail the run with a SerializationError naming the
key path: never a bare TypeError ("'<' not supported between 'str' and 'int'") or a
RecursionError from deep inside json."""

from __future__ import annotations

import re
from typing import Any

import pytest

from purpose_agent import END, Flow, SQLiteCheckpointer


def _deep(levels: int) -> list[Any]:
    root: list[Any] = []
    tip = root
    for _ in range(levels):
        tip.append([])
        tip = tip[0]
    return root


@pytest.mark.parametrize(("argument", "message"), [
    ({1: "a", "b": 2}, r"^\$\[0\]\[0\]: dict keys of different types \(int, str\)"),
    ({"options": {"b": 1, 2: 0}}, r"^\$\[0\]\[0\]\.options: dict keys of different types"),
    (_deep(10_000), r"^\$\[0\]\[0\]\[0\].*nested more than 500 levels deep"),
])
def test_a_step_argument_that_cannot_be_keyed_fails_the_run_naming_its_path(
        tmp_path, argument, message) -> None:
    calls: list[Any] = []
    flow = Flow("keyed", purpose="calls a step with an argument it cannot key")

    @flow.node
    def call(ctx):
        return {"r": ctx.step("lookup", lambda value: calls.append(value) or 1, argument)}

    flow.edge("call", END)
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    state = flow.run({}, checkpointer=cp, run_id="k")
    assert str(state.status) == "failed"
    assert state.error["type"] == "SerializationError", state.error
    assert state.error["node"] == "call"
    assert re.search(message, state.error["message"]), state.error["message"]
    assert calls == [], "the step never ran"
