"""Flows: the graph definition and the durable engine that runs it."""

from purpose_agent.flow.context import NodeContext, current_context, step
from purpose_agent.flow.graph import Flow
from purpose_agent.flow.operations import cancel_run, fork_run, load_state
from purpose_agent.flow.plan import END

__all__ = ["END", "Flow", "NodeContext", "cancel_run", "current_context", "fork_run",
           "load_state", "step"]
