"""The node running in this thread or task: one context variable, at the bottom of
``flow/`` (it imports no other flow module), so the ``@step`` decorator, the engine and
the timeouts share it without an import cycle.

Typed ``Any`` here because its type, :class:`~purpose_agent.flow.context.NodeContext`,
lives above this module; :func:`purpose_agent.flow.context.current_context` reads it
typed.
"""

from __future__ import annotations

import contextvars
from typing import Any

running: contextvars.ContextVar[Any] = contextvars.ContextVar(
    "purpose_agent_node_context", default=None)

__all__ = ["running"]
