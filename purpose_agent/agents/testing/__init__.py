"""Test doubles for agents: a scripted model, and a real local OpenAI-compatible server.

Both take the same script format, one entry per model call::

    "Hello"                                          # an answer
    {"content": "...", "usage": {"input_tokens": 12, "output_tokens": 3,
                                 "cached_input_tokens": 8}}
    {"content": "...", "finish_reason": "length"}   # why it stopped (OpenAI's words)
    {"tool_calls": [tool_call("lookup", order_id="A1")]}
    {"status": 429}                                  # server only: an HTTP error
    {"status": 500, "error": "overloaded", "headers": {"retry-after-ms": "5"}}
    {"delay": 2.0, "content": "late"}               # server only: answer after 2 s
    {"content": "...", "hold_after": 2}             # server only: a stream held after
                                                    # 2 chunks until release_stream()

``OpenAICompatibleTestServer`` answers ``POST /v1/chat/completions`` and
``AnthropicTestServer`` answers ``POST /v1/messages`` (Anthropic's Messages API) on
127.0.0.1 from a thread, so the whole client stack (the provider's SDK, its retries,
HTTP) is real. A request with ``"stream": true`` gets the answer as Server-Sent Events
in the provider's chunk format, sent chunk by chunk.
"""

from purpose_agent.agents.testing._anthropic import AnthropicTestServer
from purpose_agent.agents.testing._openai import OpenAICompatibleTestServer
from purpose_agent.agents.testing._script import ScriptedModel, tool_call

__all__ = ["AnthropicTestServer", "OpenAICompatibleTestServer", "ScriptedModel", "tool_call"]
