"""Errors of the agents layer, rooted at :class:`~purpose_agent.errors.PurposeAgentError`::

    PurposeAgentError
    ├── ModelError          a model call failed for good (HTTP status, timeout, no connection)
    ├── AgentError          an agent could not finish (no final answer within max_turns …)
    └── ToolDefinitionError a function cannot be made a tool (no schema from its signature)

:class:`ToolError` is different: a tool raises it to send an error message back to the
model instead of failing the node.
"""

from __future__ import annotations

from purpose_agent.errors import PurposeAgentError


class ModelError(PurposeAgentError):
    """A model call failed after the client's own retries.

    ``status_code`` is the HTTP status of the last attempt (None for a timeout or a
    connection failure). The message names the model and the status, never the API key.
    """

    def __init__(self, message: str, *, status_code: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retryable = retryable


class AgentError(PurposeAgentError):
    """An agent could not finish: e.g. no final answer within ``max_turns``."""


class ToolDefinitionError(PurposeAgentError, TypeError):
    """A function cannot be made a tool: its signature has no JSON schema."""


class ToolError(Exception):
    """Raise inside a tool to hand ``message`` back to the model as the tool's result.

    The run does not fail: the model reads the error and may try again. Any other
    exception fails the step, and with it the node (retried per the node's policy).
    """


__all__ = ["AgentError", "ModelError", "ToolDefinitionError", "ToolError"]
