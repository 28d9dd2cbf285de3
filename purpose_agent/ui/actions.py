"""What the page's buttons do, through the same operations as the command line.

Resume, approve, reject, answer, retry-in-doubt run the flow's code, so the flow comes
from the allow-list exactly as for ``purpose-agent resume`` (``ui --flow``, the project's
declared flows, the demo's; a run's record only selects among them, nothing else is
imported). The run is then advanced by ``flow.resume`` in a background thread of this
server; the page follows its events as they are committed. Cancel, fork and delete run
no flow code.
"""

from __future__ import annotations

import shlex
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from purpose_agent.cli.flowref import allowed_flows
from purpose_agent.cli.render import stalled
from purpose_agent.errors import FlowNotAllowed, PurposeAgentError, RunNotFound, RunStateError
from purpose_agent.flow import Flow
from purpose_agent.flow.operations import cancel_run, fork_run
from purpose_agent.flow.plan import MISSING
from purpose_agent.flow.queueing import answer_for_workers, came_from_queue
from purpose_agent.flow.registry import ENV_VAR, FlowRef, FlowRegistry, RecordedFlow
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint import BaseCheckpointer
from purpose_agent.runtime.state import RunState, RunStatus

# How long a POST waits for the run it continued before showing the run page: a run
# that pauses or ends at once is shown as it is; a longer one is followed live.
SETTLE_SECONDS = 2.0


class ActionRefused(PurposeAgentError):
    """A button's request cannot be done (bad JSON, wrong run state, read-only)."""


@dataclass(slots=True)
class Activity:
    """What this server last did to a run from the page, shown on its page."""

    verb: str
    started: float = field(default_factory=time.time)
    done: bool = False
    outcome: str = ""
    error: str | None = None
    finished: threading.Event = field(default_factory=threading.Event, repr=False)


def parse_json_field(name: str, text: str) -> Any:
    """Strict JSON from a form field, or ActionRefused naming the field."""
    try:
        value = jsonutil.loads(text)
        jsonutil.check(value, name)
    except (ValueError, PurposeAgentError) as exc:
        raise ActionRefused(f"{name} is not valid JSON ({exc}); strings need quotes, e.g. "
                            '"yes", true or {"k": 1}') from None
    return value


def parse_update(text: str) -> dict[str, Any] | None:
    """The data edit field: a JSON object of keys to replace (empty: no edit)."""
    if not text.strip():
        return None
    value = parse_json_field("the data edit", text)
    if not isinstance(value, dict):
        raise ActionRefused("the data edit must be a JSON object of keys to replace, e.g. "
                            '{"draft": "new text"}')
    return value or None


class Actions:
    """The page's actions on one store."""

    def __init__(self, cp: BaseCheckpointer, url: str, *, flow_refs: tuple[str, ...] = (),
                 flows: tuple[Flow, ...] = (), cwd: Path | None = None) -> None:
        self.cp, self.url = cp, url
        self.store = cp
        base = (cwd or Path.cwd()).resolve()
        given = [FlowRef.parse(ref, source="ui --flow", base=base) for ref in flow_refs]
        self.registry = FlowRegistry([*given, *allowed_flows(base).refs], flows=flows)
        self.activity: dict[str, Activity] = {}
        self._lock = threading.Lock()

    # ── running flow code ──────────────────────────────────────────────────────────
    def flow_for(self, state: RunState) -> Flow:
        """The allowed flow the run's record selects; FlowNotAllowed (nothing imported)
        says how to allow it."""
        recorded = RecordedFlow.of(state)
        try:
            return self.registry.resolve(recorded, run_id=state.run_id)
        except FlowNotAllowed:
            suggestion = recorded.suggestion() or "package.module:attr"
            how = (f"If you trust that code, start the inspector with it allowed: "
                   f"{shlex.join(['purpose-agent', 'ui', '--flow', suggestion, '--db', self.url])}"
                   f", or declare it in ./pyproject.toml ([tool.purpose-agent] flows) or "
                   f"${ENV_VAR}")
            raise self.registry.refusal(recorded, run_id=state.run_id,
                                        how_to_allow=how) from None

    def resume(self, run_id: str, *, verb: str, answer: Any = MISSING,
               update: dict[str, Any] | None = None, retry_in_doubt: bool = False) -> Activity:
        """Continue the run with the allowed flow, in a background thread. What can be
        checked without running it (state, flow) is checked here and raised."""
        state = self._state(run_id)
        if state.status.is_terminal:
            raise RunStateError(f"run {run_id!r} is {state.status}; nothing to resume (fork "
                                "it to run part of it again)")
        info = self.store.run_info(run_id)
        if state.status is RunStatus.RUNNING and info is not None and not stalled(info):
            raise RunStateError(f"run {run_id!r} is being advanced by {info.owner}; wait, "
                                "or cancel it")
        waits_for = (state.pending or {}).get("kind")
        if verb in ("approve", "reject", "answer") and waits_for != "interrupt":
            raise RunStateError(f"cannot {verb} run {run_id!r}: it is {state.status} and "
                                "not waiting for a person's answer")
        if verb in ("record", "retry") and waits_for != "in_doubt":
            raise RunStateError(f"run {run_id!r} has no step in doubt")
        if verb == "resume" and waits_for == "interrupt":
            raise RunStateError(f"run {run_id!r} waits for a person's answer: approve, "
                                "reject or answer it")
        if verb == "resume" and waits_for == "in_doubt":
            raise RunStateError(f"run {run_id!r} has a step in doubt: record its result if "
                                "it happened, or retry it")
        flow = self.flow_for(state)
        if update:
            # The edit form starts from the run's own values: only what a person changed
            # is an edit (and is reported as one in the run's events).
            update = {k: v for k, v in update.items()
                      if k not in state.data or state.data[k] != v} or None
        activity = Activity(verb)
        if came_from_queue(self.cp, run_id):
            # As the CLI does: a run the workers advance goes back to them; the answer is
            # journaled here and none of the flow's nodes runs in this process.
            answer_for_workers(flow, self.cp, run_id, answer=answer, update=update,
                               retry_in_doubt=retry_in_doubt)
            activity.outcome = "run is back on its queue for the workers"
            activity.done = True
            activity.finished.set()
            with self._lock:
                self.activity[run_id] = activity
            return activity

        def drive() -> None:
            try:
                final = flow.resume(run_id, checkpointer=self.cp, answer=answer, update=update,
                                    retry_in_doubt=retry_in_doubt)
                activity.outcome = f"run is {final.status}"
            except Exception as exc:  # shown on the run page: the thread has no caller
                activity.error = f"{type(exc).__name__}: {exc}"
            finally:
                activity.done = True
                activity.finished.set()

        with self._lock:
            self.activity[run_id] = activity
        threading.Thread(target=drive, name=f"purpose-ui-{verb}-{run_id}", daemon=True).start()
        activity.finished.wait(SETTLE_SECONDS)
        return activity

    # ── no flow code ───────────────────────────────────────────────────────────────
    def cancel(self, run_id: str) -> RunState:
        self._state(run_id)
        return cancel_run(self.cp, run_id)

    def fork(self, run_id: str, *, at: int, update: dict[str, Any] | None,
             new_id: str | None) -> RunState:
        self._state(run_id)
        return fork_run(self.cp, run_id, at_step=at, update=update, new_run_id=new_id or None)

    def delete(self, run_id: str, *, confirm: str) -> None:
        """Delete the run, as ``purpose-agent delete``: never one a live process is
        advancing; ``confirm`` must repeat the run id."""
        info = self.store.run_info(run_id)
        if info is None:
            raise RunNotFound(f"no run {run_id!r} in {self.url}")
        if confirm != run_id:
            raise ActionRefused(f"type the run id ({run_id}) to confirm deleting it")
        if info.status is RunStatus.RUNNING and not stalled(info):
            raise RunStateError(f"run {run_id!r} is being advanced by {info.owner}; cancel "
                                "it first, or wait until it stops")
        self.store.delete_run(run_id)
        self.activity.pop(run_id, None)

    def _state(self, run_id: str) -> RunState:
        state = self.cp.load_latest(run_id)
        if state is None:
            raise RunNotFound(f"no run {run_id!r} in {self.url}")
        return state


__all__ = ["SETTLE_SECONDS", "ActionRefused", "Actions", "Activity", "parse_json_field",
           "parse_update"]
