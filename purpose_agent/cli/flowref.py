"""Which flow a command advances a run with: one a person gave, never one a store chose.

The flows allowed are ``--flow`` on the command line, the project's declared list
(``[tool.purpose-agent] flows`` in the working directory's ``pyproject.toml``,
``$PURPOSE_AGENT_FLOWS``) and the demo's own flow. A run's recorded ``flow_ref`` only
selects among them (:mod:`purpose_agent.flow.registry`).
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from purpose_agent.errors import FlowImportError, FlowNotAllowed
from purpose_agent.flow import Flow
from purpose_agent.flow.registry import (
    ENV_VAR,
    FlowRef,
    FlowRegistry,
    RecordedFlow,
    check_flow_name,
    declared_refs,
)

DEMO_REF = "purpose_agent.cli.demo_flow:flow"


@dataclass(frozen=True, slots=True)
class FlowChoice:
    """The flow a command loaded for a run, and the ``--flow`` value that later commands
    about the run need (None when the declared flows select it without one)."""

    flow: Flow
    ref: str  # the reference it was loaded from
    flow_arg: str | None


def allowed_flows(cwd: Path | None = None) -> FlowRegistry:
    """The flows allowed without ``--flow``: the project's declared ones and the demo's."""
    demo = FlowRef.parse(DEMO_REF, source="the demo, built in")
    return FlowRegistry([*declared_refs(cwd), demo])


TRUST_NOTE = " (if you trust that code: it is the flow the run recorded, not one allowed here)"


def _selected_without_flow(recorded: RecordedFlow) -> bool:
    try:
        return allowed_flows().find(recorded) is not None
    except FlowImportError:
        return False  # a malformed declaration: the command that reads it says so


def flow_arg_for(recorded: RecordedFlow, given: str | None) -> str | None:
    """The ``--flow`` a command about this run needs, for a person who gave ``given``:
    None when the allowed flows select the run by themselves. Imports nothing."""
    if given is None or _selected_without_flow(recorded):
        return None
    return given


def needed_flow_arg(recorded: RecordedFlow) -> str | None:
    """For hints about a run this command loaded no flow for (a fork, a refused command):
    the ``--flow`` a later command needs, which is then the recorded reference (print it
    with :data:`TRUST_NOTE`), or None when the allowed flows select the run. Imports
    nothing."""
    if _selected_without_flow(recorded):
        return None
    return recorded.suggestion() or "package.module:attr"


def choose_flow(run_id: str, recorded: RecordedFlow, *, given: str | None,
                verb: str, url: str) -> FlowChoice:
    """The flow to advance ``run_id`` with: ``given`` (``--flow``) if there is one, else
    the allowed flow the run's record selects. Raises FlowNotAllowed (nothing imported)
    with the command that allows it, FlowChangedError when the loaded flow's name is not
    the recorded one, FlowImportError when the given reference cannot be imported."""
    if given is not None:
        ref = FlowRef.parse(given, source="--flow", base=Path.cwd())
        flow = check_flow_name(ref.load(recorded=recorded), recorded, run_id=run_id,
                               ref=given)
        return FlowChoice(flow, given, flow_arg_for(recorded, given))
    registry = allowed_flows()
    found = registry.find(recorded)
    try:
        flow = registry.resolve(recorded, run_id=run_id)
    except FlowNotAllowed:
        raise registry.refusal(recorded, run_id=run_id,
                               how_to_allow=how_to_allow(recorded, run_id, verb=verb,
                                                         url=url)) from None
    return FlowChoice(flow, found.text if isinstance(found, FlowRef) else flow.name, None)


def how_to_allow(recorded: RecordedFlow, run_id: str, *, verb: str, url: str) -> str:
    """What a person can do about a run whose flow is not allowed here."""
    suggestion = recorded.suggestion()
    if suggestion is None:
        return ("Pass the flow it was started with: " + shlex.join(
            ["purpose-agent", verb, run_id, "--flow", "package.module:attr", "--db", url])
            + " (or path/to/file.py:attr)")
    command = shlex.join(["purpose-agent", verb, run_id, "--flow", suggestion, "--db", url])
    return (f"If you trust that code, allow it: {command}, or declare it in "
            f"./pyproject.toml ([tool.purpose-agent] flows = [{json.dumps(suggestion)}]) or in "
            f"${ENV_VAR} (comma-separated references)")


__all__ = ["DEMO_REF", "TRUST_NOTE", "FlowChoice", "allowed_flows", "choose_flow", "flow_arg_for",
           "how_to_allow", "needed_flow_arg"]
