"""Advancing runs from the command line: the demo, resume, approve / reject.

A run is advanced in this process with its events printed as they are committed, then
its outcome is reported: what it waits for and the exact command that continues it.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.prompt import Confirm

from purpose_agent.errors import RunStateError
from purpose_agent.flow import NodeContext, messaging
from purpose_agent.flow.plan import MISSING
from purpose_agent.flow.queueing import answer_for_workers, came_from_queue
from purpose_agent.flow.registry import RecordedFlow
from purpose_agent.runtime.checkpoint import BaseCheckpointer, parse_store_url
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.state import RunState, RunStatus

from . import demo_flow
from .common import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    command_for,
    is_interactive,
    not_found,
    open_store,
    require_store,
)
from .flowref import TRUST_NOTE, choose_flow, flow_arg_for, needed_flow_arg
from .render import EventTail, clean, event_line, literal, pretty_json


def _printer(console: Console) -> Callable[[PAEvent], None]:
    def emit(event: PAEvent) -> None:
        line = event_line(event)
        if line is not None:
            line.truncate(console.width, overflow="ellipsis")
            console.print(line)
    return emit


def continue_command(verb: str, run_id: str, *words: str, url: str,
                     flow_arg: str | None = None) -> str:
    """The command line that continues ``run_id`` (with ``--flow`` when it needs one)."""
    flow = ("--flow", flow_arg) if flow_arg else ()
    return command_for(verb, run_id, *words, *flow, url=url)


def resume_command(state: RunState, *, url: str) -> str:
    """``purpose-agent resume RUN`` for a run this command loaded no flow for (a fork),
    with the ``--flow`` it needs when its flow is not allowed here (and a word of caution,
    since that reference comes from the store)."""
    flow_arg = needed_flow_arg(RecordedFlow.of(state))
    return (continue_command("resume", state.run_id, url=url, flow_arg=flow_arg)
            + (TRUST_NOTE if flow_arg else ""))


def outlives_process(url: str) -> bool:
    """False for a store that ends with this process (``memory://``, ``:memory:``)."""
    return not parse_store_url(url).in_memory


def advance(console: Console, cp: BaseCheckpointer, run_id: str,
            action: Callable[[], RunState], *, url: str, since: int = 0,
            tail: EventTail | None = None,
            flow_arg: str | None = None) -> tuple[RunState, list[PAEvent]]:
    """Run ``action`` (a blocking run / resume) while printing the run's new events."""
    tail = tail or EventTail(cp, run_id, _printer(console), since=since)
    try:
        with tail:
            state = action()
    except KeyboardInterrupt:
        # The lease dies with this process, so the run can be resumed at once.
        if outlives_process(url):
            console.print(literal("interrupted; continue the run with: "
                                  + continue_command("resume", run_id, url=url,
                                                     flow_arg=flow_arg), style="yellow"))
        raise
    return state, tail.seen


def replayed_steps(events: list[PAEvent]) -> int:
    """Durable steps answered from the journal in these events (answers to interrupts are
    not counted: the engine reports steps only)."""
    return sum(int(e.payload.get("replayed_steps") or 0) for e in events
               if e.kind == EventKind.NODE_COMPLETED)


def report(console: Console, state: RunState, seen: list[PAEvent], url: str, *,
           flow_arg: str | None = None) -> int:
    """Say how the run ended up and what to do next: the commands that continue it, with
    ``--flow flow_arg`` when it needs one. Returns the exit code."""
    run_id = state.run_id

    def command(verb: str, *words: str) -> str:
        return continue_command(verb, run_id, *words, url=url, flow_arg=flow_arg)

    gone = not outlives_process(url) and not state.status.is_terminal
    replayed = replayed_steps(seen)
    if replayed:
        console.print(literal(f"↺ {replayed} step(s) replayed from the journal, not run again",
                              style="cyan"))
    status = state.status
    if status is RunStatus.COMPLETED:
        console.print(literal(f"✓ run {run_id} completed after {state.current_step} node(s)",
                              style="bold green"))
    elif status is RunStatus.PAUSED and (state.pending or {}).get("kind") == "interrupt":
        pending = state.pending or {}
        console.print(literal(f"⏸ run {run_id} is paused: node {pending.get('node')} waits for "
                              "a person's answer", style="bold yellow"))
        console.print(literal(pretty_json(pending.get("payload"))))
        if gone:
            _say_gone(console, url)
        else:
            console.print(literal("approve:  ") + literal(command("approve")))
            console.print(literal("reject:   ") + literal(command("reject")))
            console.print(literal("or reply: ") + literal(command("resume", "--answer", "JSON")))
    elif status is RunStatus.PAUSED:
        pending = state.pending or {}
        console.print(literal(
            f"⏸ run {run_id} is paused: step {pending.get('name')} in node "
            f"{pending.get('node')} is in doubt (it started, its result was never journaled, "
            "so it may or may not have happened)." + ("" if gone else " Check, then either:"),
            style="bold yellow"))
        if gone:
            _say_gone(console, url)
        else:
            console.print(literal(command("resume", "--answer", "<its result as JSON>")))
            console.print(literal(command("resume", "--retry-in-doubt")))
    elif status is RunStatus.FAILED:
        err = state.error or {}
        console.print(literal(f"✗ run {run_id} failed in node {err.get('node')}: "
                              f"{err.get('type')}: {err.get('message')}", style="bold red"))
        if gone:
            _say_gone(console, url)
        else:
            console.print(literal("retry it: ") + literal(command("resume")))
        return EXIT_ERROR
    elif status is RunStatus.CANCELLED:
        console.print(literal(f"run {run_id} was cancelled", style="dim"))
    _report_effects(console, state)
    return EXIT_OK


def _say_gone(console: Console, url: str) -> None:
    console.print(literal(
        f"this run lives in {url}, which ends with this process: no later command can "
        "approve, reject or resume it. Keep runs in a file (--db runs.db), or answer now "
        "(the demo: --yes)", style="yellow"))


def _report_effects(console: Console, state: RunState) -> None:
    log = state.data.get("effects_log") if state.flow == demo_flow.flow.name else None
    if not isinstance(log, str):
        return
    lines = demo_flow.effects_of(log, state.run_id)
    console.print(literal(f"side effects of this run so far, one line per time one happened "
                          f"(from {log}):", style="bold"))
    for line in lines:
        console.print(literal(f"  {line}"))


# ── resume, approve, reject ────────────────────────────────────────────────────────────
def resume_run(console: Console, url: str, run_id: str, *, flow_ref: str | None = None,
               answer: Any = MISSING, update: dict[str, Any] | None = None,
               retry_in_doubt: bool = False, verb: str = "resume") -> int:
    """Continue a run in this process (``purpose-agent resume``) with ``flow_ref``
    (``--flow``) or the allowed flow its record selects; the record alone never chooses
    the code (see :mod:`.flowref`)."""
    cp = require_store(url, run_id)
    state = cp.load_latest(run_id)
    if state is None:
        raise not_found(run_id, url)
    if state.status.is_terminal:
        raise RunStateError(
            f"run {run_id!r} is {state.status}; nothing to resume. To run part of it again: "
            + command_for("fork", run_id, "--at", "N", url=url)
            + " (N: the node execution to start after)")
    recorded = RecordedFlow.of(state)
    pending = state.pending or {}
    if (state.status is RunStatus.PAUSED and pending.get("kind") == "interrupt"
            and answer is MISSING):
        flow_arg = (flow_arg_for(recorded, flow_ref) if flow_ref is not None
                    else needed_flow_arg(recorded))
        note = TRUST_NOTE if flow_ref is None and flow_arg else ""
        raise RunStateError(
            f"run {run_id!r} waits for a person's answer in node {pending.get('node')}: "
            f"{continue_command('approve', run_id, url=url, flow_arg=flow_arg)}, "
            f"{continue_command('reject', run_id, url=url, flow_arg=flow_arg)}, or resume "
            f"with --answer JSON{note}")
    choice = choose_flow(run_id, recorded, given=flow_ref, verb=verb, url=url)
    if came_from_queue(cp, run_id):
        # A run a worker advanced goes back to the workers: the answer is journaled here
        # and nothing of the flow runs in this process.
        answer_for_workers(choice.flow, cp, run_id, answer=answer, update=update,
                           retry_in_doubt=retry_in_doubt)
        console.print(literal(
            f"run {run_id} ({state.status}) is back on its queue: a worker serving flow "
            f"{choice.flow.name} continues it. Follow it with: "
            + command_for("events", run_id, "--follow", url=url)))
        return EXIT_OK
    console.print(literal(f"resuming run {run_id} ({state.status}) with flow {choice.ref}",
                          style="bold"))
    flow = choice.flow
    state, seen = advance(console, cp, run_id, lambda: flow.resume(
        run_id, checkpointer=cp, answer=answer, update=update, retry_in_doubt=retry_in_doubt),
        url=url, since=cp.next_seq(run_id) - 1, flow_arg=choice.flow_arg)
    return report(console, state, seen, url, flow_arg=choice.flow_arg)


def answer_run(console: Console, url: str, run_id: str, answer: Any, *, verb: str,
               flow_ref: str | None = None) -> int:
    """Answer the question a paused run asks, then continue it (``approve`` / ``reject``)."""
    cp = require_store(url, run_id)
    info = cp.run_info(run_id)
    if info is None:
        raise not_found(run_id, url)
    pending = info.pending or {}
    if info.status is not RunStatus.PAUSED or pending.get("kind") != "interrupt":
        why = ("is paused on an in-doubt step, not on a question; resume it with --answer "
               "or --retry-in-doubt") if pending.get("kind") == "in_doubt" else (
               f"is {info.status}, not waiting for a person's answer")
        raise RunStateError(f"cannot {verb} run {run_id!r}: it {why}")
    return resume_run(console, url, run_id, answer=answer, flow_ref=flow_ref, verb=verb)


def send_to_run(console: Console, url: str, run_id: str, topic: str, payload: Any, *,
                dedup_key: str | None, flow_ref: str | None) -> int:
    """Store a message for a run (``purpose-agent send``) and wake the run if it waits for
    it: back on its queue, or resumed here when it was started in-process."""
    cp = require_store(url, run_id)
    if cp.run_info(run_id) is None:
        raise not_found(run_id, url)
    sent = messaging.send(cp, run_id, topic, payload, dedup_key=dedup_key)
    if sent.message is None:
        console.print(literal(f"dropped: run {run_id} already has a message with dedup key "
                              f"{dedup_key!r}"))
        return EXIT_OK
    console.print(literal(f"message {sent.message.seq} on topic {topic!r} stored for run "
                          f"{run_id}"))
    if sent.resume_here:
        return resume_run(console, url, run_id, flow_ref=flow_ref)
    return EXIT_OK


# ── the demo ──────────────────────────────────────────────────────────────────────────
def effects_log_path(url: str) -> Path:
    """Where the demo appends its side effects: next to the store."""
    parsed = parse_store_url(url)
    if parsed.path is None:  # in memory, or a database server
        base = Path(".purpose_agent")
    elif parsed.kind == "jsonl":
        base = parsed.path
    else:
        base = parsed.path.parent
    return (base / "demo-effects.log").resolve()


def run_demo(console: Console, url: str, *, crash_at: str | None, yes: bool,
             run_id: str | None) -> int:
    """The ``purpose-agent demo`` command: run the bundled incident-triage flow."""
    flow = demo_flow.flow
    if crash_at is not None and crash_at not in flow.nodes:
        raise CliError(f"--crash-at {crash_at!r} is not a node of the demo "
                       f"(nodes: {', '.join(flow.nodes)})", EXIT_USAGE)
    if crash_at is not None and parse_store_url(url).in_memory:
        raise CliError("--crash-at needs a store that outlives the process; "
                       "use --db path.db or jsonl:///dir", EXIT_USAGE)
    cp = open_store(url)
    run_id = run_id or f"incident-{uuid.uuid4().hex[:8]}"
    effects = effects_log_path(url)
    console.print(literal(f"demo: {flow.purpose}", style="bold"))
    console.print(literal(f"flow {flow.name}: {' → '.join(flow.nodes)}", style="dim"))
    console.print(literal(f"run {run_id} · store {url} · side effects appended to {effects}",
                          style="dim"))
    tail = EventTail(cp, run_id, _printer(console))
    if crash_at is not None:
        def before_dying(ctx: NodeContext) -> None:
            tail.drain()
            console.print(literal(f"💥 --crash-at {crash_at}: this process now kills itself "
                                  "with SIGKILL inside the node. Resume the run with:",
                                  style="bold red"))
            console.print(literal(command_for("resume", run_id, url=url)))
            sys.stdout.flush()

        demo_flow.crash_inside(crash_at, before_dying)
    data = {"incident": dict(demo_flow.INCIDENT), "effects_log": str(effects)}
    state, seen = advance(console, cp, run_id,
                          lambda: flow.run(data, checkpointer=cp, run_id=run_id), url=url,
                          tail=tail)
    pending = state.pending or {}
    if state.status is RunStatus.PAUSED and pending.get("kind") == "interrupt":
        answer = _ask(console, pending.get("payload"), yes=yes)
        if answer is not None:
            state, more = advance(console, cp, run_id, lambda: flow.resume(
                run_id, checkpointer=cp, answer=answer), url=url,
                since=cp.next_seq(run_id) - 1)
            seen += more
    return report(console, state, seen, url)


def _ask(console: Console, payload: Any, *, yes: bool) -> bool | None:
    """The approval: True with --yes, a prompt on a terminal, else None (stay paused)."""
    if not yes and not is_interactive():
        return None
    question = payload.get("question") if isinstance(payload, dict) else None
    body = payload.get("draft") if isinstance(payload, dict) else payload
    console.print(Panel(literal(str(body)), title=escape(clean(str(question or "a person is asked"))),
                        border_style="yellow"), soft_wrap=False)
    if yes:
        console.print(literal("--yes: approved automatically", style="yellow"))
        return True
    try:
        return Confirm.ask(escape(clean(str(question or "Approve?"))), console=console, default=True)
    except EOFError:
        return None


__all__ = ["advance", "answer_run", "continue_command", "effects_log_path", "outlives_process",
           "report", "resume_command", "resume_run", "run_demo"]
