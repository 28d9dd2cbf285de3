"""The spans of a run, through the OpenTelemetry SDK's in-memory exporter: their names,
tree, GenAI attributes and links; a pause for a person is not an error; a resumed
attempt reports no replayed step again; contents only when opted in, redacted."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.agents import Agent, tool
from purpose_agent.agents.testing import ScriptedModel, tool_call
from purpose_agent.runtime.state import RunStatus
from purpose_agent.telemetry import CAPTURE_ENV, attempt_span_id, configure, run_trace_id
from purpose_agent.worker import Worker

SECRET = "sk-proj-abcdefghijklmnopqrstuvwxyz0123456789"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    configure(exporter, batch=False)
    yield exporter
    configure(InMemorySpanExporter(), batch=False)  # later tests: nowhere


@tool
def lookup_order(order_id: str) -> dict:
    """Look up an order.

    Args:
        order_id: The order id.
    """
    return {"order_id": order_id, "status": "shipped", "note": f"key {SECRET}"}


@tool(requires_approval=True)
def refund(order_id: str, amount: float) -> str:
    """Refund an order.

    Args:
        order_id: The order.
        amount: How much.
    """
    return f"refunded {amount} on {order_id}"


def support_flow(model: ScriptedModel, *, telemetry: bool | None = True) -> Flow:
    flow = Flow("support", purpose="answer a ticket", telemetry=telemetry)

    @flow.node
    def fetch(ctx):  # type: ignore[no-untyped-def]
        return {"input": ctx.step("read_ticket", lambda: "order A1 broke")}

    flow.add(Agent("support", model, "You are a support agent.", tools=[lookup_order, refund]))
    flow.edge("fetch", "support")
    flow.edge("support", END)
    return flow


def script() -> ScriptedModel:
    return ScriptedModel([
        {"tool_calls": [tool_call("lookup_order", id="call-1", order_id="A1")],
         "usage": {"input_tokens": 11, "output_tokens": 3}},
        {"tool_calls": [tool_call("refund", id="call-2", order_id="A1", amount=5)]},
        "Refunded 5 on A1.",
    ], name="gpt-test")


def by_name(exporter: InMemorySpanExporter) -> dict[str, list]:
    out: dict[str, list] = {}
    for span in exporter.get_finished_spans():
        out.setdefault(span.name, []).append(span)
    return out


def test_a_paused_then_resumed_run_as_spans(tmp_path, spans, monkeypatch) -> None:
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    model = script()
    flow = support_flow(model)
    state = flow.run({}, checkpointer=cp, run_id="t-1")
    assert state.status is RunStatus.PAUSED  # the refund asks a person

    first = by_name(spans)
    [attempt1] = first["invoke_workflow support"]
    assert attempt1.status.status_code is StatusCode.UNSET  # a pause is not an error
    assert attempt1.attributes["purpose_agent.paused"] == "interrupt"
    assert attempt1.attributes["gen_ai.conversation.id"] == "t-1"
    assert attempt1.attributes["gen_ai.operation.name"] == "invoke_workflow"
    assert attempt1.attributes["purpose_agent.attempt"] == 1
    assert attempt1.context.trace_id == run_trace_id("t-1")
    assert attempt1.context.span_id == attempt_span_id("t-1", 1)
    assert attempt1.parent is None
    [fetch] = first["node fetch"]
    assert fetch.parent.span_id == attempt1.context.span_id
    assert fetch.attributes["purpose_agent.node"] == "fetch"
    assert fetch.attributes["purpose_agent.step"] == 1
    [read] = first["step read_ticket"]
    assert read.parent.span_id == fetch.context.span_id
    chats = first["chat gpt-test"]
    assert len(chats) == 2
    chat = chats[0]
    assert chat.kind is SpanKind.CLIENT
    assert chat.attributes["gen_ai.operation.name"] == "chat"
    assert chat.attributes["gen_ai.provider.name"] == "purpose_agent.scripted"
    assert chat.attributes["gen_ai.request.model"] == "gpt-test"
    assert chat.attributes["gen_ai.response.model"] == "gpt-test"
    assert chat.attributes["gen_ai.usage.input_tokens"] == 11
    assert chat.attributes["gen_ai.usage.output_tokens"] == 3
    assert tuple(chat.attributes["gen_ai.response.finish_reasons"]) == ("tool_calls",)
    [lookup] = first["execute_tool lookup_order"]
    assert lookup.attributes["gen_ai.tool.call.id"] == "call-1"
    assert lookup.attributes["gen_ai.tool.name"] == "lookup_order"
    [node1] = first["node support"]
    assert {chat.parent.span_id, lookup.parent.span_id} == {node1.context.span_id}
    assert node1.attributes["purpose_agent.paused"] == "interrupt"
    assert all(s.status.status_code is not StatusCode.ERROR for s in spans.get_finished_spans())
    # opted out: no contents, no arguments
    for span in spans.get_finished_spans():
        assert not {"gen_ai.input.messages", "gen_ai.output.messages",
                    "gen_ai.tool.call.arguments"} & set(span.attributes)
    spans.clear()

    state = flow.resume("t-1", checkpointer=cp, answer={"approve": True})
    assert state.status is RunStatus.COMPLETED
    second = by_name(spans)
    [attempt2] = second["invoke_workflow support"]
    assert attempt2.attributes["purpose_agent.attempt"] == 2
    assert attempt2.attributes["purpose_agent.resumed_from"] == "paused"
    assert attempt2.context.trace_id == attempt1.context.trace_id
    [link] = attempt2.links
    assert link.context.span_id == attempt1.context.span_id
    assert link.context.trace_id == attempt1.context.trace_id
    # The node re-executes: its two model calls and the lookup replay from the journal
    # and are not reported again; the refund and the last model call are new.
    assert "node fetch" not in second and "step read_ticket" not in second
    assert "execute_tool lookup_order" not in second
    [refund_span] = second["execute_tool refund"]
    assert refund_span.attributes["gen_ai.tool.call.id"] == "call-2"
    assert len(second["chat gpt-test"]) == 1
    assert model.calls == 3
    assert attempt2.attributes["purpose_agent.status"] == "finished"


def test_a_failed_run_is_an_error_and_its_retry_a_linked_attempt(tmp_path, spans) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flaky = Flow("flaky", telemetry=True)
    calls = []

    @flaky.node
    def work(ctx):  # type: ignore[no-untyped-def]
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("disk on fire")
        return {"ok": True}
    flaky.edge("work", END)
    assert flaky.run({}, checkpointer=cp, run_id="f-1").status is RunStatus.FAILED
    [attempt1] = by_name(spans)["invoke_workflow flaky"]
    assert attempt1.status.status_code is StatusCode.ERROR
    assert "disk on fire" in attempt1.status.description
    [node] = by_name(spans)["node work"]
    assert node.status.status_code is StatusCode.ERROR
    spans.clear()
    assert flaky.resume("f-1", checkpointer=cp).status is RunStatus.COMPLETED
    [attempt2] = by_name(spans)["invoke_workflow flaky"]
    assert attempt2.status.status_code is StatusCode.UNSET
    assert [link.context.span_id for link in attempt2.links] == [attempt_span_id("f-1", 1)]


def test_contents_only_when_opted_in_and_redacted(tmp_path, spans, monkeypatch) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "true")
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    model = ScriptedModel([
        {"tool_calls": [tool_call("lookup_order", id="c-9", order_id=f"A1 {SECRET}")]},
        f"Done, the key was {SECRET}."], name="gpt-test")
    flow = Flow("contents", telemetry=True)
    flow.add(Agent("support", model, "Help.", tools=[lookup_order]))
    flow.edge("support", END)
    flow.run({"input": f"my key is {SECRET}"}, checkpointer=cp, run_id="c-1")
    found = by_name(spans)
    [tool_span] = found["execute_tool lookup_order"]
    assert "A1" in tool_span.attributes["gen_ai.tool.call.arguments"]
    chats = found["chat gpt-test"]
    assert any("Done, the key was" in c.attributes.get("gen_ai.output.messages", "")
               for c in chats)
    assert any("gen_ai.input.messages" in c.attributes for c in chats)
    for span in spans.get_finished_spans():
        for value in span.attributes.values():
            assert SECRET not in str(value), span.name


def test_telemetry_off_emits_nothing(tmp_path, spans, monkeypatch) -> None:
    monkeypatch.delenv("PURPOSE_AGENT_OTEL", raising=False)
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    support_flow(script(), telemetry=None).run({}, checkpointer=cp, run_id="quiet")
    assert spans.get_finished_spans() == ()
    monkeypatch.setenv("PURPOSE_AGENT_OTEL", "1")
    support_flow(script(), telemetry=None).run({}, checkpointer=cp, run_id="loud")
    assert "invoke_workflow support" in by_name(spans)


class _Signalling(InMemorySpanExporter):
    """An in-memory exporter that says when a span named ``wanted`` arrived."""

    def __init__(self, wanted: str) -> None:
        super().__init__()
        self.wanted, self.arrived = wanted, threading.Event()

    def export(self, spans):  # type: ignore[no-untyped-def]
        result = super().export(spans)
        if any(s.name == self.wanted for s in spans):
            self.arrived.set()
        return result


def test_a_worker_s_run_is_one_attempt_with_its_worker(tmp_path) -> None:
    exporter = _Signalling("invoke_workflow queued")
    configure(exporter, batch=False)
    try:
        cp = SQLiteCheckpointer(tmp_path / "runs.db")
        queued = Flow("queued", telemetry=True)
        queued.add(lambda ctx: {"done": True}, name="only")
        queued.edge("only", END)
        run_id = queued.enqueue({}, checkpointer=cp)
        worker = Worker(cp, flows=[queued], poll_interval=0.05)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        try:
            assert exporter.arrived.wait(30)
        finally:
            worker.stop()
            thread.join(30)
        [attempt] = by_name(exporter)["invoke_workflow queued"]
        assert attempt.attributes["purpose_agent.attempt"] == 1  # enqueuing is no attempt
        assert attempt.attributes["purpose_agent.run_id"] == run_id
        assert attempt.links == ()
        [node] = by_name(exporter)["node only"]
        owner = node.attributes["purpose_agent.worker"]
        assert owner == attempt.attributes["purpose_agent.worker"]
        assert owner.split(":")[1].split("/")[0] == str(os.getpid())  # host:pid/token
        assert cp.load_latest(run_id).status is RunStatus.COMPLETED
    finally:
        configure(InMemorySpanExporter(), batch=False)
