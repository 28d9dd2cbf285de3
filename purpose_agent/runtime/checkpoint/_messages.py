"""Messages sent to runs (``flow.send`` / ``ctx.wait_for``): what every store checks
before it stores one, and how its rows become :class:`~purpose_agent.runtime.journal.Message`.

Each run has a mailbox: messages are numbered 1, 2, 3 … per run in the order they were
sent; a message is delivered to at most one ``wait_for`` (identified by its step key),
and a receiver that asks again with the same key gets the same message back, so a crash
between taking a message and journaling it never loses or doubles it.
"""

from __future__ import annotations

from typing import Any

from purpose_agent.errors import StoreError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.journal import Message

MAX_TOPIC = 200
MAX_DEDUP_KEY = 200

# (seq, topic, payload JSON, sent_at, dedup_key, delivered_to): a store's row.
MessageRow = tuple[int, str, str, float, "str | None", "str | None"]


def check_topic(topic: object) -> str:
    """``topic`` if it can name a mailbox topic, else ValueError saying what can."""
    if not isinstance(topic, str) or not topic or len(topic) > MAX_TOPIC or "\x00" in topic:
        raise ValueError(f"a message topic is a non-empty string of at most {MAX_TOPIC} "
                         f"characters, got {topic!r}")
    return topic


def check_dedup_key(key: object) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not key or len(key) > MAX_DEDUP_KEY or "\x00" in key:
        raise ValueError(f"a message's dedup_key is a non-empty string of at most "
                         f"{MAX_DEDUP_KEY} characters, got {key!r}")
    return key


def to_message(run_id: str, row: tuple[Any, ...]) -> Message:
    """A Message from a store's row; StoreError if the payload is not JSON."""
    seq, topic, payload, sent_at, dedup_key, delivered_to = row
    try:
        value = jsonutil.loads(payload)
    except ValueError as exc:
        raise StoreError(f"message {seq} of run {run_id!r} is damaged: its payload is not "
                         f"JSON ({exc})") from exc
    return Message(run_id, int(seq), topic, value, float(sent_at), dedup_key, delivered_to)


__all__ = ["MAX_TOPIC", "MessageRow", "check_dedup_key", "check_topic", "to_message"]
