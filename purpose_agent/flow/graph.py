"""The flow graph: nodes (plain functions), edges, conditional routes, the entry node.

A :class:`Flow` is a definition; running it is the engine's job: its methods validate
it once into a :class:`~.plan.Plan` and delegate to :mod:`.operations` (start, resume,
fork, cancel), and :mod:`.engine` drives the run.
"""

from __future__ import annotations

import asyncio
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, overload

from purpose_agent.errors import FlowDefinitionError, LeaseError, RunBusyError
from purpose_agent.flow import messaging, operations, queueing
from purpose_agent.flow.observe import telemetry_observer
from purpose_agent.flow.operations import cancel_run, fork_run, load_state
from purpose_agent.flow.parking import due
from purpose_agent.flow.plan import (
    END,
    MISSING,
    NodeFn,
    NodeSpec,
    Plan,
    RetryPolicy,
    Router,
    is_async_callable,
)
from purpose_agent.flow.reducers import Reducer, check_reducers
from purpose_agent.flow.signals import LeaseLost
from purpose_agent.flow.streaming import LiveItem, afollow, follow
from purpose_agent.runtime.checkpoint import (
    BaseCheckpointer,
    default_url,
    open_checkpointer,
    parse_store_url,
    validate_run_id,
)
from purpose_agent.runtime.events import PAEvent
from purpose_agent.runtime.owners import driver
from purpose_agent.runtime.state import RunState


class Flow:
    """A durable flow of nodes. The first node registered is the entry node unless
    :meth:`entry` says otherwise.

    ``max_steps`` bounds how many nodes a run may execute (default: 10 × the number of
    nodes, at least 25); ``reducers`` say how a node's returned value for a key combines
    with the current one (``"append"``, ``"extend"``, ``"merge"`` or ``fn(old, new)``;
    default: replace). ``lease_ttl`` is how long a run's ownership lasts without a
    heartbeat before another process may take it over (a dead process on this host is
    taken over at once). A background thread renews it every third of that; a driver
    whose last renewal is older than half of it re-checks it with the store before its
    next node or step, and stops (``LeaseError``) if another driver took the run over.
    The heartbeat is a Python thread: a C call that holds the GIL (a C extension that
    does not release it, a huge regex or JSON parse) starves it, so keep the lease well
    above the longest such call; the default, 60 s, lets one run ~40 s.
    ``telemetry=True`` (or ``$PURPOSE_AGENT_OTEL=1`` when not given) exports each run's
    spans with OpenTelemetry (``pip install 'purpose-agent[otel]'``; see
    ``purpose_agent.telemetry``).

    ``inline_wait``: a durable wait (``ctx.sleep``, a retry's backoff, a ``wait_for``
    deadline) up to this many seconds is waited out by the process running the flow in
    ``run`` / ``resume``; a longer one parks the run (PAUSED, holding no process) until
    ``resume`` after its time, or ``send`` of the message it waits for. A worker waits
    out at most 1 s itself and parks the run on its queue for anything longer.

    ``budget`` (a :class:`purpose_agent.agents.Budget`) limits what a whole run spends
    on models, over all its agents and nodes, across crashes and resumes: the model call
    that would go over it is not made and the run pauses for a person (see ``Agent``).
    """

    def __init__(self, name: str, *, purpose: str = "", max_steps: int | None = None,
                 reducers: Mapping[str, Reducer] | None = None,
                 lease_ttl: float = 60.0, inline_wait: float = 60.0,
                 telemetry: bool | None = None, budget: Any = None) -> None:
        if not isinstance(name, str) or not name:
            raise FlowDefinitionError("a flow needs a non-empty name")
        if not float(lease_ttl) > 0:
            raise FlowDefinitionError(f"flow {name!r}: lease_ttl must be > 0 seconds, got "
                                      f"{lease_ttl!r}")
        self.name = name
        self.purpose = purpose
        self._max_steps = max_steps
        self.reducers = check_reducers(reducers)
        self.lease_ttl = float(lease_ttl)
        self.telemetry = telemetry  # None: $PURPOSE_AGENT_OTEL decides, at each run
        if not float(inline_wait) >= 0:
            raise FlowDefinitionError(f"flow {name!r}: inline_wait must be >= 0 seconds, got "
                                      f"{inline_wait!r}")
        self.inline_wait = float(inline_wait)
        if budget is not None and not callable(getattr(budget, "reached", None)):
            raise FlowDefinitionError(f"flow {name!r}: budget must be a Budget "
                                      f"(purpose_agent.agents.Budget), got {budget!r}")
        self.budget = budget
        self._nodes: dict[str, NodeSpec] = {}
        self._edges: dict[str, str] = {}
        self._routes: dict[str, tuple[Router, tuple[str, ...] | None]] = {}
        self._entry: str | None = None
        caller = sys._getframe(1).f_globals
        self._module = caller.get("__name__", "__main__")
        self._file = caller.get("__file__")
        self._ref: str | None = None
        self._ref_file: str | None = None
        self._ref_scanned = -1  # size of the module's namespace when last searched in vain

    # ── definition ───────────────────────────────────────────────────────────────
    @overload
    def node(self, fn: NodeFn, /) -> NodeFn: ...
    @overload
    def node(self, fn: None = None, /, *, name: str | None = None, retries: int = 0,
             timeout: float | None = None, backoff: float = 0.5,
             retry: RetryPolicy | None = None) -> Callable[[NodeFn], NodeFn]: ...
    def node(self, fn: NodeFn | None = None, /, *, name: str | None = None, retries: int = 0,
             timeout: float | None = None, backoff: float = 0.5,
             retry: RetryPolicy | None = None) -> Any:
        """Register a node: ``fn(ctx) -> dict | None``, sync or async.

        ``retries`` re-executes a failing node (its completed steps replay from the
        journal) after ``backoff`` × 2^n seconds; ``retry=RetryPolicy(...)`` says more
        (attempts, wait bounds, non-retryable errors, ``retry_after``). The wait before a
        retry is durable: a crash during it resumes it at its journaled end, with the
        attempt count it had. ``timeout`` fails an attempt that runs longer. Usable as ``@flow.node`` or ``@flow.node(retries=2, timeout=30.0)``, or
        ``flow.node(agent)`` for any callable with a ``name``.
        """
        def register(func: NodeFn) -> NodeFn:
            self.add(func, name=name, retries=retries, timeout=timeout, backoff=backoff,
                     retry=retry)
            return func

        return register(fn) if fn is not None else register

    def add(self, fn: NodeFn, *, name: str | None = None, retries: int = 0,
            timeout: float | None = None, backoff: float = 0.5,
            retry: RetryPolicy | None = None) -> NodeSpec:
        """Register ``fn`` (a function, or an object such as an Agent) as a node."""
        node_name = name or getattr(fn, "name", None) or getattr(fn, "__name__", None)
        if not isinstance(node_name, str) or not node_name or node_name == END:
            raise FlowDefinitionError(f"cannot name a node after {fn!r}; pass name=...")
        if node_name in self._nodes:
            raise FlowDefinitionError(f"flow {self.name!r} already has a node {node_name!r}; "
                                      "node names must be unique")
        if not callable(fn):
            raise FlowDefinitionError(f"node {node_name!r} is not callable")
        if retries < 0 or (timeout is not None and timeout <= 0):
            raise FlowDefinitionError(f"node {node_name!r}: retries must be >= 0 and "
                                      "timeout > 0")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise FlowDefinitionError(f"node {node_name!r}: retry= takes a RetryPolicy, got "
                                      f"{retry!r}")
        spec = NodeSpec(node_name, fn, retries, timeout, backoff, is_async_callable(fn), retry)
        self._nodes[node_name] = spec
        if self._entry is None:
            self._entry = node_name
        return spec

    def edge(self, source: str, target: str) -> Flow:
        """After ``source`` completes, run ``target`` (or stop, with ``END``)."""
        self._check_known(source, "edge from")
        if target != END:
            self._check_known(target, f"edge {source!r} ->")
        self._check_no_exit(source)
        self._edges[source] = target
        return self

    def route(self, source: str, router: Router, *, targets: list[str] | None = None) -> Flow:
        """After ``source`` completes, ``router(data)`` names the next node (or ``END``)."""
        self._check_known(source, "route from")
        if not callable(router):
            raise FlowDefinitionError(f"route from {source!r}: {router!r} is not callable")
        for target in targets or ():
            if target != END:
                self._check_known(target, f"route {source!r} ->")
        self._check_no_exit(source)
        self._routes[source] = (router, tuple(targets) if targets else None)
        return self

    def entry(self, name: str) -> Flow:
        """Make ``name`` the first node of every run."""
        self._check_known(name, "entry")
        self._entry = name
        return self

    def _check_known(self, name: str, what: str) -> None:
        if name not in self._nodes:
            known = ", ".join(self._nodes) or "none yet"
            raise FlowDefinitionError(f"{what} {name!r}: flow {self.name!r} has no such node "
                                      f"(nodes: {known}); define the node first")

    def _check_no_exit(self, source: str) -> None:
        if source in self._edges or source in self._routes:
            raise FlowDefinitionError(f"node {source!r} already has a way out; a node has one "
                                      "edge or one route")

    def validate(self) -> None:
        """Raise FlowDefinitionError unless every node has a way out and the graph has an
        entry. Called when a run starts or resumes; call it yourself to check a flow
        earlier (in a test, at import)."""
        if not self._nodes:
            raise FlowDefinitionError(f"flow {self.name!r} has no nodes")
        for name in self._nodes:
            if name not in self._edges and name not in self._routes:
                raise FlowDefinitionError(
                    f"node {name!r} of flow {self.name!r} has no way out; add "
                    f"flow.edge({name!r}, <next node or END>) or flow.route({name!r}, fn)")

    def _plan(self) -> Plan:
        """The flow as the engine runs it, validated (:meth:`validate`) once, here."""
        self.validate()
        assert self._entry is not None
        return Plan(name=self.name, purpose=self.purpose, entry=self._entry,
                    max_steps=self.max_steps, lease_ttl=self.lease_ttl,
                    inline_wait=self.inline_wait,
                    reducers=self.reducers, nodes=dict(self._nodes), edges=dict(self._edges),
                    routes=dict(self._routes), ref=self.ref, ref_file=self.ref_file,
                    observer=telemetry_observer(self.telemetry), budget=self.budget)

    # ── what a reader asks ───────────────────────────────────────────────────────
    @property
    def nodes(self) -> list[str]:
        """The names of the nodes, in the order they were registered."""
        return list(self._nodes)

    @property
    def entry_node(self) -> str | None:
        """The node every run starts at (None while the flow has no node)."""
        return self._entry

    @property
    def max_steps(self) -> int:
        """How many node executions a run may make (see the class docstring)."""
        return self._max_steps or max(25, 10 * len(self._nodes))

    @property
    def ref(self) -> str | None:
        """Where another process finds this flow: ``module:attr`` or ``path.py:attr``.

        Recorded in each run as a hint: a later process loads a flow only from a
        reference it was given, and uses the recorded one to select among those.
        """
        module = sys.modules.get(self._module)
        names = vars(module) if module else {}
        # A flow built in a function is in no module namespace: search again only once
        # the namespace has changed, not on every run started.
        if self._ref is None and len(names) != self._ref_scanned:
            self._ref_scanned = len(names)
            for attr, value in names.items():
                if value is self:
                    if self._module == "__main__" and self._file:
                        self._ref = f"{Path(self._file).resolve()}:{attr}"
                    else:
                        self._ref = f"{self._module}:{attr}"
                        # `module:attr` names a file only relative to the sys.path of
                        # the process that started the run: keep the file as well, so
                        # it can be matched from another working directory.
                        if self._file:
                            self._ref_file = str(Path(self._file).resolve())
                    break
        return self._ref

    @property
    def ref_file(self) -> str | None:
        """The file of the module :attr:`ref` names (None when ``ref`` is a file already,
        or the module has no file)."""
        return self._ref_file if self.ref is not None else None

    # ── running ──────────────────────────────────────────────────────────────────
    def run(self, data: dict[str, Any] | None = None, *,
            checkpointer: BaseCheckpointer | None = None, run_id: str | None = None,
            session_id: str | None = None, _parent: dict[str, Any] | None = None) -> RunState:
        """Start a run and advance it until it completes, pauses, fails or is cancelled.

        Each node's completion is committed atomically before the next node starts.
        Returns the run's state: check ``state.status`` (``COMPLETED``, ``PAUSED`` with
        ``state.pending`` saying what it waits for, ``FAILED`` with ``state.error``).
        Raises RunStateError if ``run_id`` is taken.
        """
        cp = _store(checkpointer)
        run_id = validate_run_id(run_id or f"{self.name}-{uuid.uuid4().hex[:12]}")
        with driver() as owner:
            runner = operations.start(self._plan(), data, cp, run_id, session_id, owner,
                                      parent=_parent)  # _parent: a child run's (children.py)
            state = _drive(runner.drive)
        return self._go_on(cp, state)

    def enqueue(self, data: dict[str, Any] | None = None, *,
                checkpointer: BaseCheckpointer | None = None, run_id: str | None = None,
                queue: str = "default", priority: int = 0, delay: float | str | None = None,
                dedup_key: str | None = None, _parent: dict[str, Any] | None = None) -> str:
        """Put a run on a queue for the workers (``purpose-agent worker``) and return its id
        at once; nothing of the flow runs here.

        The run is journaled as a start is (its first event, its data, this flow's name
        and reference), QUEUED, with its queue row, in one commit. Workers serving this
        flow and ``queue`` claim it highest ``priority`` first, then oldest, once
        ``delay`` (seconds, or ``"10s"``, ``"5m"``…, on the store's clock) has passed.
        With ``dedup_key``, a key already used returns that run's id and enqueues
        nothing. Needs a SQLite or PostgreSQL store (QueueUnsupported otherwise); a bad
        option raises QueueError, a taken ``run_id`` RunStateError.
        """
        return queueing.enqueue(self, _store(checkpointer), data, run_id=run_id, queue=queue,
                                priority=priority, delay=delay, dedup_key=dedup_key,
                                parent=_parent)

    async def arun(self, data: dict[str, Any] | None = None, *,
                   checkpointer: BaseCheckpointer | None = None, run_id: str | None = None,
                   session_id: str | None = None) -> RunState:
        """Async :meth:`run`: async nodes are awaited on the running event loop."""
        cp = _store(checkpointer)
        run_id = validate_run_id(run_id or f"{self.name}-{uuid.uuid4().hex[:12]}")
        with driver() as owner:
            runner = await operations.astart(self._plan(), data, cp, run_id, session_id, owner)
            state = await _adrive(runner.adrive)
        return await self._ago_on(cp, state)

    def resume(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None,
               answer: Any = MISSING, update: dict[str, Any] | None = None,
               retry_in_doubt: bool = False) -> RunState:
        """Continue a run where it stopped: after a crash, a pause, a failure or a fork.

        ``update`` is merged into the run data first (a person's edit). ``answer`` answers
        the pending interrupt (the node re-executes, its completed steps replay from the
        journal, and ``ctx.interrupt`` returns the answer), or supplies the result of an
        in-doubt at-most-once step; ``retry_in_doubt=True`` runs that step again instead.
        Raises RunBusyError (nothing written) if another live driver owns the run: another
        process, or another thread or task of this one.
        """
        cp = _store(checkpointer)
        return self._go_on(cp, self._resume(cp, run_id, answer=answer, update=update,
                                            retry_in_doubt=retry_in_doubt))

    def _resume(self, cp: BaseCheckpointer, run_id: str, *, answer: Any = MISSING,
                update: dict[str, Any] | None = None, retry_in_doubt: bool = False) -> RunState:
        with driver() as owner:
            runner = operations.resume(self._plan(), cp, validate_run_id(run_id), owner,
                                       answer=answer, update=update, retry_in_doubt=retry_in_doubt)
            return _drive(runner.drive)

    def _go_on(self, cp: BaseCheckpointer, state: RunState) -> RunState:
        """A run that parked while what it waits for came (a message sent meanwhile could
        not resume it: it was still being driven here) goes on at once."""
        while due(cp, state):
            try:
                state = self._resume(cp, state.run_id)
            except RunBusyError:  # another process resumed it first
                break
        return state

    def send(self, run_id: str, topic: str, payload: Any = None, *,
             checkpointer: BaseCheckpointer | None = None,
             dedup_key: str | None = None) -> bool:
        """Send a message to a run (from any process): ``ctx.wait_for(topic)`` in the run
        returns ``payload``. The message is durable when this returns; messages are
        delivered in the order they were sent, each exactly once; a second message with
        the same ``dedup_key`` for the run is dropped (returns False).

        A run parked waiting for ``topic`` is woken: one that came from a queue is made
        claimable now (a worker continues it); one started in-process is resumed here,
        by this call, with this flow. Raises RunNotFound, or RunStateError for a run that
        has ended, before anything is stored.
        """
        cp = _store(checkpointer)
        sent = messaging.send(cp, run_id, topic, payload, dedup_key=dedup_key)
        if sent.resume_here:
            try:
                self._go_on(cp, self._resume(cp, run_id))
            except RunBusyError:  # resumed by someone else meanwhile: it finds the message
                pass
        return sent.message is not None

    async def aresume(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None,
                      answer: Any = MISSING, update: dict[str, Any] | None = None,
                      retry_in_doubt: bool = False) -> RunState:
        """Async :meth:`resume`."""
        cp = _store(checkpointer)
        state = await self._aresume(cp, run_id, answer=answer, update=update,
                                    retry_in_doubt=retry_in_doubt)
        return await self._ago_on(cp, state)

    async def _ago_on(self, cp: BaseCheckpointer, state: RunState) -> RunState:
        """:meth:`_go_on` for the async driver."""
        while due(cp, state):
            try:
                state = await self._aresume(cp, state.run_id)
            except RunBusyError:
                break
        return state

    async def _aresume(self, cp: BaseCheckpointer, run_id: str, *, answer: Any = MISSING,
                       update: dict[str, Any] | None = None,
                       retry_in_doubt: bool = False) -> RunState:
        with driver() as owner:
            runner = operations.resume(self._plan(), cp, validate_run_id(run_id), owner,
                                       answer=answer, update=update, retry_in_doubt=retry_in_doubt)
            return await _adrive(runner.adrive)

    def fork(self, run_id: str, *, at_step: int, checkpointer: BaseCheckpointer | None = None,
             update: dict[str, Any] | None = None, new_run_id: str | None = None) -> RunState:
        """Time travel: a new run starting from the state right after node execution
        ``at_step`` of ``run_id`` (0: its start). The original run is untouched. The new
        run is PENDING; ``resume`` it to advance it."""
        return fork_run(_store(checkpointer), validate_run_id(run_id), at_step=at_step,
                        update=update, new_run_id=new_run_id)

    def cancel(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None) -> RunState:
        """Cancel a run. A paused, failed or crashed run is CANCELLED at once (the state
        returned); a run that a live driver is advancing — in another process, or another
        thread or task of this one — is asked to stop: it ends CANCELLED at its next node
        boundary, and the state returned is the one it had when asked."""
        return cancel_run(_store(checkpointer), validate_run_id(run_id), lease_ttl=self.lease_ttl)

    def stream(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None,
               since: int = 0, poll: float = 0.1,
               stop: threading.Event | None = None) -> Iterator[PAEvent | LiveItem]:
        """Follow a run as it happens (from another thread, task or process): its events
        as they are committed, and the live output of its nodes (on this host; on
        PostgreSQL from any host, from when it starts following), such as an
        Agent's answer as the model streams it (:class:`~.streaming.LiveItem`,
        ``kind="model.token"``; never journaled). Ends once the run stops (completed,
        paused, failed, cancelled) or ``stop`` is set; waits for a run not started yet."""
        return follow(_store(checkpointer), validate_run_id(run_id), since=since, poll=poll,
                      stop=stop)

    def astream(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None,
                since: int = 0, poll: float = 0.1,
                stop: asyncio.Event | None = None) -> AsyncIterator[PAEvent | LiveItem]:
        """:meth:`stream` for ``async for``: the same items, read without blocking the
        event loop, so one loop can run a flow (``await flow.arun(...)``) and follow it."""
        return afollow(_store(checkpointer), validate_run_id(run_id), since=since, poll=poll,
                       stop=stop)

    def get_state(self, run_id: str, *, checkpointer: BaseCheckpointer | None = None) -> RunState:
        """The run's current state, as journaled."""
        return load_state(_store(checkpointer), validate_run_id(run_id))

    def __repr__(self) -> str:
        return f"Flow({self.name!r}, nodes={self.nodes})"


_default_stores: dict[str, BaseCheckpointer] = {}


def _store(checkpointer: BaseCheckpointer | None) -> BaseCheckpointer:
    """The given store, else the default one (``$PURPOSE_AGENT_DB`` or
    ``./.purpose_agent/runs.db``), opened once per process and URL."""
    if checkpointer is not None:
        return checkpointer
    url = default_url()
    parsed = parse_store_url(url)  # sqlite:///runs.db and runs.db: one store
    key = url if parsed.path is None else f"{parsed.kind}:{parsed.path.resolve()}"
    if key not in _default_stores:
        _default_stores[key] = open_checkpointer(url)
    return _default_stores[key]


def _drive(fn: Callable[[], RunState]) -> RunState:
    try:
        return fn()
    except LeaseLost as exc:
        raise LeaseError(str(exc)) from None


async def _adrive(fn: Callable[[], Awaitable[RunState]]) -> RunState:
    try:
        return await fn()
    except LeaseLost as exc:
        raise LeaseError(str(exc)) from None
