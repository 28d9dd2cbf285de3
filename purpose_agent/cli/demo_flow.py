"""The bundled demo: triage an incident, draft a reply, ask a person, send it.

Offline and deterministic (no network, no API key). Each durable step appends one line
to an effects log (``effects_log`` in the run data), so after a crash and a resume you
can see that no side effect happened twice. This flow is always allowed, so
``purpose-agent resume`` needs no ``--flow`` for a demo run: its recorded ``flow_ref``,
``purpose_agent.cli.demo_flow:flow``, selects it.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from purpose_agent.flow import END, Flow, NodeContext, step
from purpose_agent.flow.context import current_context

flow = Flow(
    "incident-triage",
    purpose="Triage a production incident and reply to the customer, with a person's approval",
)

INCIDENT: dict[str, str] = {
    "service": "payments-api",
    "customer": "ACME Corp",
    "report": "Checkout fails with HTTP 502 since 09:12 UTC",
}

_LOG_LINES = {
    "payments-api": [
        "09:12:03 ERROR upstream connect error: card-gateway:443 connection refused",
        "09:12:04 WARN  retry 1/3 for POST /v1/charges",
        "09:12:09 ERROR 502 Bad Gateway returned to client (38 in the last minute)",
        "09:13:30 INFO  deploy card-gateway v2.14.0 finished at 09:11:58",
    ],
}

# node name -> called right before this process SIGKILLs itself inside that node
_crash_hooks: dict[str, Callable[[NodeContext], None]] = {}


def crash_inside(node: str, before_dying: Callable[[NodeContext], None]) -> None:
    """Make this process SIGKILL itself inside ``node``, right after the node's first
    durable step (before the interrupt, for ``approve``). Used by ``demo --crash-at``."""
    if node not in flow.nodes:
        raise ValueError(f"the demo flow has no node {node!r} (nodes: {', '.join(flow.nodes)})")
    _crash_hooks.clear()
    _crash_hooks[node] = before_dying


def _crash_point(ctx: NodeContext) -> None:
    hook = _crash_hooks.get(ctx.node)
    if hook is not None:
        hook(ctx)
        os.kill(os.getpid(), signal.SIGKILL)


def record_effect(text: str) -> None:
    """Append one side effect to the run's effects log: ``<run id> <text>``, fsynced."""
    ctx = current_context()
    if ctx is None:
        raise RuntimeError("record_effect is called from inside a demo node")
    path = Path(ctx.data["effects_log"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as log:
        log.write(f"{ctx.run_id} {text}\n")
        log.flush()
        os.fsync(log.fileno())


def effects_of(effects_log: str, run_id: str) -> list[str]:
    """The effects log lines of one run, in order (empty if the log does not exist)."""
    try:
        lines = Path(effects_log).read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []
    prefix = f"{run_id} "
    return [line[len(prefix):] for line in lines if line.startswith(prefix)]


# ── durable steps: each runs once per run, whatever happens to the process ────────────
@step
def read_logs(service: str) -> list[str]:
    """Pretend to query the log store for the incident's service."""
    record_effect(f"fetch_logs: queried the log store for {service}")
    return _LOG_LINES.get(service, [f"no logs for {service}"])


def assess_severity(logs: list[str]) -> dict[str, str]:
    """A rule-based stand-in for a model call that classifies the incident."""
    errors = sum(" ERROR " in line for line in logs)
    severity = "SEV-1" if errors >= 2 else "SEV-3"
    category = "dependency outage" if any("connection refused" in x for x in logs) else "bug"
    record_effect(f"classify: model call assessed {severity}, {category}")
    return {"severity": severity, "category": category}


def page_oncall(severity: str) -> str:
    """Pretend to page the on-call engineer."""
    oncall = "dana@payments" if severity == "SEV-1" else "queue@payments"
    record_effect(f"classify: paged {oncall} ({severity})")
    return oncall


def write_draft(incident: dict[str, str], severity: str, category: str) -> str:
    """A scripted model writing the customer reply."""
    record_effect("draft_reply: model call drafted the reply")
    return (f"Hello {incident['customer']}, we are aware that {incident['report'].lower()}. "
            f"It is a {category} ({severity}) and our on-call engineer is on it; we will "
            "update you within 30 minutes.")


@step(at_most_once=True)
def send_email(to: str, body: str) -> dict[str, str]:
    """Pretend to email the customer: at most once, since an email cannot be unsent."""
    record_effect(f"send: emailed {to} ({len(body)} chars)")
    return {"to": to, "status": "sent"}


# ── nodes ────────────────────────────────────────────────────────────────────────────
@flow.node
def fetch_logs(ctx: NodeContext) -> dict[str, Any]:
    """Read the logs of the service named in the incident."""
    logs = read_logs(ctx.data["incident"]["service"])
    _crash_point(ctx)
    ctx.emit(f"read {len(logs)} log lines")
    return {"logs": logs}


@flow.node
def classify(ctx: NodeContext) -> dict[str, Any]:
    """Assess severity and category, then page whoever is on call."""
    verdict = ctx.step("assess_severity", assess_severity, ctx.data["logs"])
    _crash_point(ctx)
    oncall = ctx.step("page_oncall", page_oncall, verdict["severity"])
    return {**verdict, "oncall": oncall}


@flow.node
def draft_reply(ctx: NodeContext) -> dict[str, Any]:
    """Draft the reply to the customer."""
    data = ctx.data
    draft = ctx.step("write_draft", write_draft, data["incident"], data["severity"],
                     data["category"])
    _crash_point(ctx)
    return {"draft": draft}


@flow.node
def approve(ctx: NodeContext) -> dict[str, Any]:
    """Ask a person whether to send the draft (the run pauses until they answer)."""
    _crash_point(ctx)
    answer = ctx.interrupt({
        "question": f"Send this reply to {ctx.data['incident']['customer']}?",
        "severity": ctx.data["severity"],
        "draft": ctx.data["draft"],
    })
    return {"approved": answer is True or str(answer).lower() in ("yes", "y", "approve")}


@flow.node
def send(ctx: NodeContext) -> dict[str, Any]:
    """Email the approved reply."""
    receipt = send_email(ctx.data["incident"]["customer"], ctx.data["draft"])
    _crash_point(ctx)
    return {"sent": receipt}


flow.edge("fetch_logs", "classify").edge("classify", "draft_reply")
flow.edge("draft_reply", "approve").edge("send", END)
flow.route("approve", lambda data: "send" if data["approved"] else END, targets=["send", END])


__all__ = ["INCIDENT", "crash_inside", "effects_of", "flow", "record_effect"]
