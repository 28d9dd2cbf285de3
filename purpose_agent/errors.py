"""The exception hierarchy of purpose-agent.

Every error the library raises on purpose derives from :class:`PurposeAgentError`::

    PurposeAgentError
    ├── StoreError                  a store cannot be opened, read or written
    │   ├── StoreNotFound           no store at the path a reader was given
    │   ├── SchemaVersionError      the store was written by a newer purpose-agent
    │   ├── SeqConflictError        an event seq would leave a gap or a duplicate
    │   ├── StoreCorrupted          what is stored is damaged (names the file or row)
    │   ├── LeaseError              a write without the current lease
    │   └── QueueUnsupported        the store has no run queue (JSONL, in-memory)
    ├── SerializationError          a value is not strict JSON (names the key path)
    ├── InvalidRunId                a run id that is empty, too long or could escape a directory
    ├── RunNotFound                 no run with that id in the store
    ├── RunBusyError                the run is being advanced by another live process
    ├── RunStateError               the run is not in a state that allows the operation
    │   ├── RunFailed               raised by ``RunState.raise_for_status()`` for a failed run
    │   └── StepInDoubt             an at-most-once step may or may not have happened
    ├── FlowDefinitionError         the flow graph is invalid (unknown node, no way out …)
    ├── FlowChangedError            the flow's code no longer matches what the run journaled
    ├── FlowImportError             the flow recorded in a run cannot be imported
    │   └── FlowNotAllowed          the run's flow is not one this process was given
    ├── MaxStepsExceeded            a run went past its ``max_steps`` bound
    ├── QueueError                  a bad queue option (queue name, delay, priority)
    ├── NodeTimeout                 a node ran longer than its ``timeout``
    └── WaitTimeout                 ``ctx.wait_for`` saw no message before its deadline

Control-flow signals (:class:`ControlSignal` and its subclasses) are *not* errors: they
derive from :class:`BaseException` so that a user's ``except Exception:`` around a tool
cannot swallow a pause, a cancellation or a lost lease. Only the engine raises and
catches them.
"""

from __future__ import annotations

from typing import Any


class PurposeAgentError(Exception):
    """Root of every error purpose-agent raises on purpose."""


class StoreError(PurposeAgentError):
    """A store could not be opened, read or written. Earlier commits stay intact."""


class StoreNotFound(StoreError):
    """A store opened read-only does not exist (readers never create one)."""


class SchemaVersionError(StoreError):
    """The store was written by a newer version of purpose-agent; upgrade to read it."""


class SeqConflictError(StoreError):
    """An event's ``seq`` would leave a gap or a duplicate in the run's event log."""


class StoreCorrupted(StoreError):
    """What a store holds is damaged: a line or row that is not the JSON the store wrote,
    or a run whose event seqs or state versions have a gap. The message names the file
    and line (JSONL) or the run and row (SQLite). Nothing is skipped and nothing is
    written to the run after it: restore the store from a backup, or delete the run."""


class LeaseError(StoreError):
    """A write was attempted without holding the run's current lease."""


class SerializationError(PurposeAgentError, TypeError):
    """A value cannot be stored as strict JSON. ``path`` names the offending key."""

    def __init__(self, message: str, *, path: str = "$") -> None:
        super().__init__(message)
        self.path = path


class InvalidRunId(PurposeAgentError, ValueError):
    """A run id is empty, too long, or could escape the store's directory."""


class RunNotFound(PurposeAgentError, LookupError):
    """No run with this id exists in the store."""


class RunBusyError(PurposeAgentError):
    """Another live process owns the run's lease; nothing was written."""


class RunStateError(PurposeAgentError):
    """The run's status does not allow the operation (e.g. resuming a completed run)."""


class FlowDefinitionError(PurposeAgentError, ValueError):
    """The flow graph is invalid: unknown node, duplicate name, node without a way out."""


class FlowChangedError(PurposeAgentError):
    """The flow's code changed since the run was journaled; no result was replayed."""


class FlowImportError(PurposeAgentError, ImportError):
    """The flow recorded in a run (``module:attr``) cannot be imported."""


class FlowNotAllowed(FlowImportError):
    """A run's recorded flow is not among the flows this process was given (``--flow``,
    the project's declared list, ``Worker(flows=...)``); nothing was imported.

    ``run_id``, ``recorded`` (the run's own account of its flow: a hint, never trusted)
    and ``allowed`` (the references that were) say what to allow.
    """

    def __init__(self, message: str, *, run_id: str | None = None, recorded: object = None,
                 allowed: tuple[str, ...] = ()) -> None:
        super().__init__(message)
        self.run_id = run_id
        self.recorded = recorded
        self.allowed = allowed


class QueueUnsupported(StoreError):
    """The store cannot hold a run queue: queues and workers need SQLite or PostgreSQL."""


class QueueError(PurposeAgentError, ValueError):
    """A bad queue option: a queue name, a delay, a priority or a dedup key."""


class MaxStepsExceeded(PurposeAgentError):
    """The run executed more nodes than its ``max_steps`` allows."""


class NodeTimeout(PurposeAgentError, TimeoutError):
    """A node ran longer than its ``timeout``."""


class WaitTimeout(PurposeAgentError, TimeoutError):
    """``ctx.wait_for(topic, timeout=...)`` reached its journaled deadline with no message.
    Raised in the node (catch it to go on without the message); the timeout is journaled,
    so a re-executed node gets the same outcome."""


class StepInDoubt(RunStateError):
    """An at-most-once step started but its result was never journaled.

    The run is paused; a person supplies the result with ``resume(answer=...)`` or
    allows a new attempt with ``resume(retry_in_doubt=True)``.
    """


class RunFailed(RunStateError):
    """The run is FAILED: raised by :meth:`RunState.raise_for_status`.

    ``run_id`` and ``node`` say where; ``error_type``, ``error_message`` and
    ``error_traceback`` are those of the exception that failed the node's last attempt
    (the traceback as text, redacted and shortened; ``None`` for runs journaled before
    tracebacks were kept). ``error`` is the run's whole ``state.error``.
    """

    def __init__(self, run_id: str, error: dict[str, Any] | None) -> None:
        err = dict(error or {})
        self.run_id = run_id
        self.error = err
        self.node: str | None = err.get("node")
        self.error_type: str | None = err.get("type")
        self.error_message: str | None = err.get("message")
        self.error_traceback: str | None = err.get("traceback")
        super().__init__(f"run {run_id!r} failed in node {self.node}"
                         f" (attempt {err.get('attempt')}): {self.error_type}: "
                         f"{self.error_message}")

    def __str__(self) -> str:
        text = str(self.args[0])
        if self.error_traceback:
            text += "\n\nthe node's traceback (last attempt):\n" + self.error_traceback.rstrip()
        return text

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), (self.run_id, self.error))


class ControlSignal(BaseException):
    """Base of the engine's control-flow signals; never raised to user code's handlers."""


__all__ = [
    "ControlSignal",
    "FlowChangedError",
    "FlowDefinitionError",
    "FlowImportError",
    "FlowNotAllowed",
    "InvalidRunId",
    "LeaseError",
    "MaxStepsExceeded",
    "NodeTimeout",
    "PurposeAgentError",
    "QueueError",
    "QueueUnsupported",
    "RunBusyError",
    "RunFailed",
    "RunNotFound",
    "RunStateError",
    "SchemaVersionError",
    "SeqConflictError",
    "SerializationError",
    "StepInDoubt",
    "StoreCorrupted",
    "StoreError",
    "StoreNotFound",
]
