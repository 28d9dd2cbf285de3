"""Messages sent to runs (``flow.send`` / ``ctx.wait_for``): what every store checks
before it stores one, and how its rows become :class:`~purpose_agent.runtime.journal.Message`.

Each run has a mailbox: messages are numbered 1, 2, 3 … per run in the order they were
sent; a message is delivered to at most one ``wait_for`` (identified by its step key),
and a receiver that asks again with the same key gets the same message back, so a crash
between taking a message and journaling it never loses or doubles it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from purpose_agent.errors import RunNotFound, StoreError
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint._prepare import validate_run_id
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


class Mailboxes(ABC):
    """The messages part of the store contract (mixed into BaseCheckpointer): three
    storage primitives a store implements, and the checked calls built on them."""

    @abstractmethod
    def clock(self) -> float:
        """The store's clock (BaseCheckpointer.clock)."""

    @abstractmethod
    def _not_found(self, run_id: str) -> RunNotFound:
        """The error for a run the store does not have (BaseCheckpointer._not_found)."""

    @abstractmethod
    def _send_message(self, run_id: str, topic: str, payload_json: str,
                      dedup_key: str | None, now: float) -> int | None:
        """Store a message for the run as its mailbox's next seq, durable on return; None
        (nothing stored) if the run already has one with ``dedup_key``; RunNotFound
        (:meth:`_not_found`) if there is no such run."""

    @abstractmethod
    def _receive_message(self, run_id: str, topic: str, key: str) -> tuple[int, str] | None:
        """Atomically: the message already delivered to ``key``, else the oldest
        undelivered message of ``topic``, now marked delivered to ``key``; as (seq,
        payload JSON), or None (nothing written) if there is none."""

    @abstractmethod
    def _message_rows(self, run_id: str) -> list[tuple[Any, ...]]:
        """The run's messages in seq order, as (seq, topic, payload JSON, sent_at,
        dedup_key, delivered_to)."""

    def send_message(self, run_id: str, topic: str, payload: Any, *,
                     dedup_key: str | None = None) -> Message | None:
        """Put a message in the run's mailbox; durable when this returns. Returns it, or
        None when the run already has a message with ``dedup_key`` (nothing stored).
        ValueError for a bad topic or key, SerializationError for a payload that is not
        strict JSON, RunNotFound if there is no such run — all before anything is
        written."""
        validate_run_id(run_id)
        check_topic(topic)
        check_dedup_key(dedup_key)
        text = jsonutil.dumps(payload, f"$.message[{topic}]")
        now = self.clock()
        seq = self._send_message(run_id, topic, text, dedup_key, now)
        if seq is None:
            return None
        return Message(run_id, seq, topic, jsonutil.loads(text), now, dedup_key)

    def receive_message(self, run_id: str, topic: str, key: str) -> Message | None:
        """The message delivered to ``key`` (a ``wait_for``'s step key): the one given to
        it before, else the oldest undelivered message of ``topic``, which is delivered
        to it now (atomically). None if there is none. Each message is delivered to one
        key only, and the same key always gets the same message."""
        found = self._receive_message(validate_run_id(run_id), check_topic(topic), key)
        if found is None:
            return None
        seq, text = found
        return to_message(run_id, (seq, topic, text, 0.0, None, key))

    def list_messages(self, run_id: str, *, topic: str | None = None,
                      undelivered: bool = False) -> list[Message]:
        """The run's messages in the order they were sent (of ``topic`` when given; only
        those nobody received yet with ``undelivered=True``)."""
        rows = self._message_rows(validate_run_id(run_id))
        return [to_message(run_id, row) for row in rows
                if (topic is None or row[1] == topic) and not (undelivered and row[5])]


__all__ = ["MAX_TOPIC", "Mailboxes", "MessageRow", "check_dedup_key", "check_topic",
           "to_message"]
