"""``purpose-agent events``: a run's event log, printed once or followed as it grows
(with a streaming model's answer as it comes: on this host, or from any host on
PostgreSQL)."""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated

import typer

from purpose_agent.runtime.events import EventKind, PAEvent
from purpose_agent.runtime.live import live_reader
from purpose_agent.runtime.state import RunStatus

from .app import EVENT_KINDS, RunArg, _console, app
from .common import (
    EXIT_USAGE,
    CliError,
    DbOption,
    JsonOption,
    command_for,
    require_run,
    resolve_url,
    stdout_json,
)
from .render import EventTail, events_table, literal, stalled


def _known_kind(value: str) -> str | None:
    """The kind ``value`` names (today's value, also for the agent.* / tool.* kinds of
    earlier releases), or None if there is no such kind."""
    try:
        return str(EventKind(value))
    except ValueError:
        return None


@app.command()
def events(
    run_id: RunArg,
    since: Annotated[int, typer.Option("--since", metavar="SEQ", min=0,
                                       help="Only events after this seq.")] = 0,
    kind: Annotated[list[str] | None, typer.Option(
        "--kind", "-k", metavar="KIND", help="Only events of this kind (repeatable): "
        + ", ".join(EVENT_KINDS) + ".", show_default=False)] = None,
    follow: Annotated[bool, typer.Option(
        "--follow", "-f", help="Keep printing new events until the run is no longer "
        "running (with --json: one JSON object per line), and a streaming model's answer "
        "as it comes (on this host, or from any host on PostgreSQL; not journaled).")] = False,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Print a run's event log: a table (streamed with --follow), or with --json a JSON
    array (with --follow: one JSON object per line)."""
    unknown = sorted(k for k in kind or () if _known_kind(k) is None)
    if unknown:
        raise CliError(f"unknown event kind(s) {', '.join(unknown)}; the kinds are "
                       + ", ".join(EVENT_KINDS), EXIT_USAGE)
    url = resolve_url(db)
    cp = require_run(url, run_id, read_only=True)
    console = _console()
    if not follow:
        found = cp.list_events(run_id, since_seq=since, kinds=kind or None)
        if as_json:
            stdout_json([e.to_dict() for e in found])
        else:
            console.print(events_table(found, console.width))
        return
    wanted = {_known_kind(k) for k in kind or ()}
    if not as_json:
        console.print(events_table([], console.width))  # the header, then rows as they come

    mid_line = False  # live text printed since the last row
    live = live_reader(cp, run_id)

    def emit(event: PAEvent) -> None:
        nonlocal mid_line
        if wanted and _known_kind(str(event.kind)) not in wanted:
            return
        if as_json:
            print(event.to_json(), flush=True)
        else:
            if mid_line:
                console.print()
                mid_line = False
            console.print(events_table([event], console.width, header=False))
            sys.stdout.flush()

    def show_live() -> None:
        # A model's answer as it streams (never journaled), as it comes.
        nonlocal mid_line
        items = live.read()
        for item in items if not wanted else ():
            if as_json:
                print(json.dumps({**item, "live": True}, ensure_ascii=False), flush=True)
            else:
                console.print(literal(item.get("text", ""), style="cyan"), end="")
                mid_line = True

    tail = EventTail(cp, run_id, emit, since=since)
    try:
        while True:
            info = cp.run_info(run_id)  # read before draining: nothing committed before it is missed
            show_live()
            tail.drain()
            if info is None or info.status is not RunStatus.RUNNING:
                break
            if stalled(info):
                if not as_json:
                    console.print(literal("the process advancing this run is gone; continue it "
                                          "with: " + command_for("resume", run_id, url=url),
                                          style="yellow"))
                break
            time.sleep(0.2)
    finally:
        live.close()
