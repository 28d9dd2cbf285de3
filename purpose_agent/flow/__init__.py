"""Flows: the graph definition and the durable engine that runs it."""

from purpose_agent.flow.context import NodeContext, current_context, step
from purpose_agent.flow.engine import END
from purpose_agent.flow.graph import Flow, cancel_run, fork_run, load_state

__all__ = ["END", "Flow", "NodeContext", "cancel_run", "current_context", "fork_run",
           "load_state", "step"]
