"""A run's model usage (tokens, and cost where the model had prices), summed from its
``model.response`` events.

The events are the right source: a model call's ``model.response`` event is committed
together with the call's journaled response, so a call whose response was lost in a
crash has no event (it is sent, and counted, again), and a response replayed from the
journal on resume records no new event (it is never counted twice).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from purpose_agent.runtime.events import EventKind, PAEvent

TOKEN_FIELDS = ("input_tokens", "output_tokens", "cached_input_tokens", "cache_write_tokens",
                "total_tokens")


def usage_totals(events: Iterable[PAEvent]) -> dict[str, Any] | None:
    """The sums over a run's answered model calls, or None if it made none.

    ``{"model_calls", "input_tokens", "output_tokens", "cached_input_tokens",
    "cache_write_tokens", "total_tokens", "cost_usd", "priced_calls"}``; ``cost_usd`` is
    None when no call was priced, and covers ``priced_calls`` of ``model_calls`` calls.
    A failed call (no usage reported) is not counted.
    """
    totals: dict[str, Any] = dict.fromkeys(("model_calls", *TOKEN_FIELDS), 0)
    cost, priced = 0.0, 0
    for event in events:
        if event.kind != EventKind.MODEL_RESPONSE:
            continue
        usage = event.payload.get("usage")
        if not isinstance(usage, dict):
            continue
        totals["model_calls"] += 1
        for name in TOKEN_FIELDS:
            value = usage.get(name)
            totals[name] += value if isinstance(value, int) else 0
        call_cost = event.payload.get("cost_usd")
        if isinstance(call_cost, (int, float)):
            cost += call_cost
            priced += 1
    if not totals["model_calls"]:
        return None
    totals["cost_usd"] = round(cost, 10) if priced else None
    totals["priced_calls"] = priced
    return totals


def usage_text(totals: dict[str, Any]) -> str:
    """One line: ``3 model calls, 1,240 tokens (1,100 in of which 800 cached, 140 out),
    $0.0021``."""
    calls = totals["model_calls"]
    cached = totals.get("cached_input_tokens") or 0
    written = totals.get("cache_write_tokens") or 0
    detail = f"{totals['input_tokens']:,} in"
    if cached or written:
        parts = ([f"{cached:,} cached"] if cached else []) + (
            [f"{written:,} written to cache"] if written else [])
        detail += f" of which {' and '.join(parts)}"
    text = (f"{calls} model call{'s' if calls != 1 else ''}, {totals['total_tokens']:,} tokens "
            f"({detail}, {totals['output_tokens']:,} out)")
    if totals.get("cost_usd") is not None:
        text += f", ${money(totals['cost_usd'])}"
        if totals["priced_calls"] < calls:
            text += f" ({totals['priced_calls']} of {calls} calls priced)"
    return text


def money(value: float) -> str:
    """Dollars: to the cent from a cent up (1.25), to the millionth below (0.000123)."""
    return f"{value:.2f}" if value >= 0.01 or value == 0 else f"{value:.6f}".rstrip("0")


__all__ = ["TOKEN_FIELDS", "money", "usage_text", "usage_totals"]
