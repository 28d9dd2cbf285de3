"""A real MCP server for the agent tests (the official ``mcp`` package's MCPServer).

    python mcp_server.py                 # stdio
    python mcp_server.py --http PORT     # streamable HTTP on 127.0.0.1:PORT/mcp

Its tools append one line per real call to ``$EFFECTS_FILE``; ``HANG_AT=after:<tool>``
makes that tool block after its effect until the process is killed.
"""

from __future__ import annotations

import os
import sys
import threading

from mcp.server import MCPServer

server = MCPServer("orders")


def _effect(tool: str, line: str) -> None:
    with open(os.environ["EFFECTS_FILE"], "a") as f:
        f.write(line + "\n")
        f.flush()
        os.fsync(f.fileno())
    if os.environ.get("HANG_AT") == f"after:{tool}":
        # Hang until the agent that started this server is killed, then go too (an
        # orphan would hang on forever).
        parent, tick = os.getppid(), threading.Event()
        while os.getppid() == parent:
            tick.wait(0.05)
        os._exit(0)


@server.tool()
def lookup_order(order_id: str) -> dict:
    """Look up an order's status."""
    _effect("lookup_order", f"mcp lookup {order_id}")
    return {"order_id": order_id, "status": "shipped"}


@server.tool()
def charge(order_id: str, amount: float) -> str:
    """Charge a customer's card (never twice)."""
    _effect("charge", f"mcp charge {order_id} {amount}")
    return f"charged {amount} on {order_id}"


@server.tool()
def fail(reason: str) -> str:
    """Always fails."""
    raise ValueError(f"failed on purpose: {reason}")


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
