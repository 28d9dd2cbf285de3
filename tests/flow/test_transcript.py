"""The transcript is a pure function of the events, and shows no secrets."""

from __future__ import annotations

from purpose_agent import END, Flow, InMemoryCheckpointer, SQLiteCheckpointer
from purpose_agent.runtime.transcript import render_transcript, transcript_lines


def make_flow() -> Flow:
    flow = Flow("triage", purpose="answer a ticket")

    @flow.node
    def classify(ctx):
        label = ctx.step("classify", lambda text, api_key: "billing", ctx.data["ticket"],
                         api_key="sk-live-abcdefghijklmnop")
        ctx.emit("classified", label=label)
        return {"label": label}

    @flow.node
    def approve(ctx):
        return {"ok": ctx.interrupt({"question": "Send?"})}

    flow.edge("classify", "approve").edge("approve", END)
    return flow


def test_transcript_from_events_only(tmp_path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    flow = make_flow()
    flow.run({"ticket": "refund please"}, checkpointer=cp, run_id="t")
    flow.resume("t", checkpointer=cp, answer="yes")
    events = cp.list_events("t")
    text = render_transcript(events)
    assert text == render_transcript(list(reversed(events)))  # ordered by seq, pure
    lines = text.splitlines()
    assert lines[0].startswith("#1") and "run started: flow triage — answer a ticket" in lines[0]
    for expected in ["▶ classify", "→ classify(", "← classify: billing",
                     "classify: classified", "? asks a person", "run paused at approve",
                     "! a person answered: yes", "✓ approve updated ok", "run finished"]:
        assert any(expected in line for line in lines), (expected, text)
    # A copy of the events in another store renders identically.
    other = InMemoryCheckpointer()
    for event in events:
        other.save_event(event)
    assert render_transcript(other.list_events("t")) == text
    # From a seq on: the tail only.
    tail = transcript_lines(cp.list_events("t", since_seq=5))
    assert tail and all(int(line[1:].split()[0]) > 5 for line in tail)


def test_secrets_in_step_arguments_never_reach_the_journal(tmp_path) -> None:
    cp = SQLiteCheckpointer(tmp_path / "runs.db")
    make_flow().run({"ticket": "x"}, checkpointer=cp, run_id="t")
    cp.close()
    raw = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("runs.db"))
    assert b"sk-live-abcdefghijklmnop" not in raw
    assert b"[redacted]" in raw


def test_redaction_masks_secret_keys_and_tokens_but_not_token_counts() -> None:
    from purpose_agent.runtime.redact import REDACTED, redact

    masked = redact({"api_key": "k", "X-Api-Key": "k", "access_token": "k", "password": "k",
                     "headers": {"Authorization": "Bearer abcdefghijkl"},
                     "note": "use sk-abcdefghijklmnop now",
                     "usage": {"input_tokens": 12, "max_tokens": 5}})
    assert masked["api_key"] == masked["X-Api-Key"] == masked["access_token"] == REDACTED
    assert masked["password"] == masked["headers"]["Authorization"] == REDACTED
    assert masked["note"] == f"use {REDACTED} now"
    assert masked["usage"] == {"input_tokens": 12, "max_tokens": 5}
