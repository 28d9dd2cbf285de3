"""Agents on the durable engine: model adapters, tools, and the tool-calling Agent node.

    from purpose_agent.agents import Agent, AnthropicModel, OpenAIModel, mcp_tools, tool

Every model call and every tool call an :class:`Agent` makes is a durable step: a
response or result is committed before the agent acts on it, and a resumed run replays
it instead of paying for it (or running it) again. Test doubles live in
:mod:`purpose_agent.agents.testing`.
"""

from purpose_agent.agents._errors import AgentError, ModelError, ToolDefinitionError, ToolError
from purpose_agent.agents.agent import Agent
from purpose_agent.agents.anthropic_model import AnthropicModel
from purpose_agent.agents.budget import Budget
from purpose_agent.agents.mcp import MCPTool, MCPTools, mcp_tools
from purpose_agent.agents.model import Message, Model, ModelResponse, Price, ToolCall, Usage
from purpose_agent.agents.openai_model import OpenAIModel
from purpose_agent.agents.tools import Tool, tool

__all__ = [
    "Agent",
    "AgentError",
    "AnthropicModel",
    "Budget",
    "MCPTool",
    "MCPTools",
    "Message",
    "Model",
    "ModelError",
    "ModelResponse",
    "OpenAIModel",
    "Price",
    "Tool",
    "ToolCall",
    "ToolDefinitionError",
    "ToolError",
    "Usage",
    "mcp_tools",
    "tool",
]
