"""Fan-out and child runs: score documents in parallel durable steps, then hand each
summary to a child run of another flow.

    python examples/fan_out.py
    purpose-agent show digest-1 --db .purpose_agent/digests.db
"""

from __future__ import annotations

import os

from purpose_agent import END, Flow, open_checkpointer

summarize = Flow("summarize", purpose="Summarize one document")


@summarize.node
def shorten(ctx):
    return {"summary": ctx.data["text"][:12] + "…"}


summarize.edge("shorten", END)

digest = Flow("digest", purpose="Score documents, then summarize the best two")


def score(text: str) -> int:  # a model call, say: each one is a durable step
    return len(set(text.split()))


@digest.node
def rank(ctx):
    scores = ctx.map(score, ctx.data["docs"], max_concurrency=3)
    best = sorted(range(len(scores)), key=lambda i: -scores[i])[:2]
    return {"scores": scores, "best": best}


@digest.node
def summarize_best(ctx):
    handles = [ctx.child(summarize, {"text": ctx.data["docs"][i]}) for i in ctx.data["best"]]
    return {"summaries": [done["summary"] for done in ctx.gather(*handles)]}


digest.edge("rank", "summarize_best").edge("summarize_best", END)

if __name__ == "__main__":
    store = open_checkpointer(os.environ.get("PURPOSE_AGENT_DB", ".purpose_agent/digests.db"))
    docs = ["the cat sat on the mat", "durable execution for agents that crash and resume",
            "a b a b", "workers claim runs from a queue and advance them"]
    state = digest.run({"docs": docs}, checkpointer=store, run_id="digest-1")
    print(state.status, state.data["scores"], state.data["summaries"])
