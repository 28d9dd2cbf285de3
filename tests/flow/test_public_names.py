"""The public surface reads well: ``help(Flow.resume)`` shows what ``answer`` defaults to,
and the engine's internals are not methods of the flow definition."""

from __future__ import annotations

import inspect
import pydoc

import purpose_agent.flow
from purpose_agent import Flow
from purpose_agent.flow.plan import MISSING


def test_the_answer_default_reads_as_a_name_in_help() -> None:
    assert repr(MISSING) == "MISSING"
    for method in (Flow.resume, Flow.aresume):
        signature = str(inspect.signature(method))
        assert "answer: 'Any' = MISSING" in signature or "answer: Any = MISSING" in signature
        text = pydoc.render_doc(method, renderer=pydoc.plaintext)
        assert "object at 0x" not in text, text
        assert "= MISSING" in text


def test_the_flow_definition_does_not_expose_the_engine_s_internals() -> None:
    flow = Flow("surface")
    for name in ("spec", "next_after", "has_callable_reducers"):
        assert not hasattr(flow, name), f"Flow.{name} is the engine's, not the user's"
    assert "Runner" not in purpose_agent.flow.engine.__all__
    assert set(purpose_agent.flow.__all__) == {
        "END", "Flow", "NodeContext", "cancel_run", "current_context", "fork_run",
        "load_state", "step"}
