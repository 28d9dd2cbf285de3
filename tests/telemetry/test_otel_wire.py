"""Spans through a real OTLP/HTTP exporter to a receiver on 127.0.0.1, configured only by
environment variables, across a SIGKILL: the attempt that resumes after the crash is a
new span linked to the killed one, and nothing the killed process reported (completed
nodes, a committed step) is reported again."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from otlp_receiver import Receiver, serve

from purpose_agent.telemetry import attempt_span_id, run_trace_id

CHILD = Path(__file__).with_name("otel_child.py")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()
    server = serve(rec)
    yield rec
    server.shutdown()
    server.server_close()


def _env(receiver: Receiver, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(PURPOSE_AGENT_OTEL="1", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
               OTEL_SERVICE_NAME="otel-crash-test", OTEL_BSP_SCHEDULE_DELAY="20", **extra)
    return env


def test_a_resume_after_sigkill_is_a_linked_attempt_and_repeats_nothing(
        tmp_path: Path, receiver: Receiver) -> None:
    db = str(tmp_path / "runs.db")
    child = subprocess.Popen([sys.executable, str(CHILD), "run", db, "k-1"],
                             env=_env(receiver, HOLD="1"), stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "holding"
        # what the doomed process finished is on the wire before it dies
        receiver.wait_for(lambda spans: {"node a", "node b", "step fetch", "step s1"}
                          <= {s.name for s in spans})
    finally:
        child.kill()
        child.communicate()
    assert child.returncode == -9
    assert not receiver.named("invoke_workflow otel-crash")  # never ended: never sent

    done = subprocess.run([sys.executable, str(CHILD), "resume", db, "k-1"],
                          env=_env(receiver), capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "completed"
    receiver.wait_for(lambda spans: any(s.name == "invoke_workflow otel-crash" for s in spans))

    trace_id = f"{run_trace_id('k-1'):032x}"
    first = f"{attempt_span_id('k-1', 1):016x}"
    [attempt2] = receiver.named("invoke_workflow otel-crash")
    assert attempt2.span_id == f"{attempt_span_id('k-1', 2):016x}"
    assert attempt2.trace_id == trace_id
    assert attempt2.links == [(trace_id, first)]
    assert attempt2.attributes["gen_ai.conversation.id"] == "k-1"
    assert attempt2.attributes["purpose_agent.attempt"] == 2
    assert attempt2.attributes["purpose_agent.resumed_from"] == "running"
    assert attempt2.resource["service.name"] == "otel-crash-test"
    # Each node and step reported once: a and b by the killed process, under its attempt;
    # c (re-executed) and d by the resuming one; s1 replayed from the journal, not re-sent.
    counts = {name: len(receiver.named(name))
              for name in ("node a", "node b", "node c", "node d", "step fetch", "step s1")}
    assert counts == {"node a": 1, "node b": 1, "node c": 1, "node d": 1,
                      "step fetch": 1, "step s1": 1}
    [a] = receiver.named("node a")
    assert (a.trace_id, a.parent_span_id) == (trace_id, first)
    [c] = receiver.named("node c")
    assert c.parent_span_id == attempt2.span_id
    assert c.attributes["purpose_agent.step"] == 3
    assert all(s.status_code != 2 for s in receiver.spans)  # no error anywhere
