"""purpose-agent: durable execution for AI agent workflows.

The public surface. Everything not listed in ``__all__`` is private to its package.
"""

from purpose_agent import _opt_in
from purpose_agent.errors import (
    FlowChangedError,
    FlowDefinitionError,
    FlowImportError,
    InvalidRunId,
    LeaseError,
    MaxStepsExceeded,
    NodeTimeout,
    PurposeAgentError,
    RunBusyError,
    RunFailed,
    RunNotFound,
    RunStateError,
    SchemaVersionError,
    SeqConflictError,
    SerializationError,
    StepInDoubt,
    StoreCorrupted,
    StoreError,
    StoreNotFound,
    WaitTimeout,
)
from purpose_agent.flow import END, Flow, NodeContext, step
from purpose_agent.flow.observe import provide_telemetry
from purpose_agent.flow.plan import RetryPolicy
from purpose_agent.flow.streaming import LiveItem
from purpose_agent.runtime.checkpoint import (
    InMemoryCheckpointer,
    JSONLCheckpointer,
    SQLiteCheckpointer,
    open_checkpointer,
)
from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.state import RunState, RunStatus

# Flow(telemetry=True) / PURPOSE_AGENT_OTEL=1 turn on the OpenTelemetry export: the core
# knows only the hook, the package says what answers it.
provide_telemetry(_opt_in.telemetry)

__version__ = "0.1.0"

__all__ = [
    "END",
    "EventKind",
    "Flow",
    "FlowChangedError",
    "FlowDefinitionError",
    "FlowImportError",
    "InMemoryCheckpointer",
    "InvalidRunId",
    "JSONLCheckpointer",
    "LeaseError",
    "LiveItem",
    "MaxStepsExceeded",
    "NodeContext",
    "NodeTimeout",
    "PAEvent",
    "PurposeAgentError",
    "RetryPolicy",
    "RunBusyError",
    "RunFailed",
    "RunNotFound",
    "RunState",
    "RunStateError",
    "RunStatus",
    "SQLiteCheckpointer",
    "SchemaVersionError",
    "SeqConflictError",
    "SerializationError",
    "StepInDoubt",
    "StoreCorrupted",
    "StoreError",
    "StoreNotFound",
    "WaitTimeout",
    "__version__",
    "open_checkpointer",
    "step",
]
