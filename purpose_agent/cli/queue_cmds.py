"""The queue's commands: ``enqueue``, ``worker`` and ``workers``.

A worker runs only the flows it was given (``--flow``, else the project's declared
list): a run enqueued for any other flow waits, and ``purpose-agent runs`` says why.
"""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from purpose_agent.flow import Flow
from purpose_agent.flow.registry import ENV_VAR, FlowRef, declared_refs
from purpose_agent.runtime.queue import DEFAULT_QUEUE, WorkerInfo, queue_store
from purpose_agent.worker import DEFAULT_TAKEOVER_LIMIT, Worker

from .app import _console, app
from .common import (
    EXIT_USAGE,
    CliError,
    DbOption,
    JsonOption,
    open_store,
    parse_json,
    resolve_url,
    stdout_json,
)
from .queue_view import worker_state
from .render import literal, relative_time

QueueOption = Annotated[list[str] | None, typer.Option(
    "--queue", "-q", metavar="NAME", help=f"A queue (repeatable; default {DEFAULT_QUEUE!r}).",
    show_default=False)]


def _load(text: str) -> Flow:
    return FlowRef.parse(text, source="--flow", base=Path.cwd()).load()


@app.command()
def enqueue(
    flow: Annotated[str, typer.Option("--flow", metavar="REF", help="The flow to run, as "
                                      "package.module:attr or path/to/file.py:attr.",
                                      show_default=False)],
    data: Annotated[str, typer.Option("--data", metavar="JSON", help="The run's data, a "
                                      "JSON object.")] = "{}",
    queue: Annotated[str, typer.Option("--queue", "-q", metavar="NAME",
                                       help="The queue.")] = DEFAULT_QUEUE,
    priority: Annotated[int, typer.Option("--priority", metavar="N",
                                          help="Higher runs first.")] = 0,
    delay: Annotated[str | None, typer.Option(
        "--delay", metavar="TIME", help="Not before this long from now: 500ms, 10s, 5m, "
        "2h, 1d (on the store's clock).", show_default=False)] = None,
    dedup_key: Annotated[str | None, typer.Option(
        "--dedup-key", metavar="KEY", help="Enqueue nothing if a run holds this key; print "
        "that run's id instead.", show_default=False)] = None,
    run_id: Annotated[str | None, typer.Option("--run-id", metavar="ID",
                                               help="Id of the new run.")] = None,
    db: DbOption = None,
) -> None:
    """Put a run on a queue for the workers and print its id (nothing runs here)."""
    value = parse_json("--data", data)
    if not isinstance(value, dict):
        raise CliError(f"--data must be a JSON object, e.g. --data '{{\"ticket\": 7}}', got "
                       f"{data!r}", EXIT_USAGE)
    chosen = _load(flow)
    cp = open_store(resolve_url(db))
    print(chosen.enqueue(value, checkpointer=cp, run_id=run_id, queue=queue, priority=priority,
                         delay=delay, dedup_key=dedup_key))


@app.command()
def worker(
    flow: Annotated[list[str] | None, typer.Option(
        "--flow", metavar="REF", help="A flow this worker runs (repeatable). Default: the "
        f"project's declared flows ([tool.purpose-agent] flows, ${ENV_VAR}).",
        show_default=False)] = None,
    queue: QueueOption = None,
    concurrency: Annotated[int, typer.Option("--concurrency", "-c", min=1, metavar="N",
                                             help="Runs advanced at a time.")] = 1,
    lease: Annotated[float | None, typer.Option(
        "--lease", metavar="SECONDS", min=0.1, help="How long a run stays with a worker that "
        "stopped answering before another takes it over (default: the flow's lease_ttl, 60).",
        show_default=False)] = None,
    poll: Annotated[float, typer.Option("--poll", metavar="SECONDS", min=0.01,
                                        help="How often an idle worker looks for runs.")] = 1.0,
    takeover_limit: Annotated[int, typer.Option(
        "--takeover-limit", metavar="N", min=0, help="Fail a run taken over from dead "
        "workers more than N times.")] = DEFAULT_TAKEOVER_LIMIT,
    db: DbOption = None,
) -> None:
    """Claim queued runs and advance them until SIGTERM or Ctrl-C.

    On SIGTERM / Ctrl-C the worker claims nothing more, lets each run in flight finish
    its node, commits it and hands the run back to its queue, then exits 0. A worker
    killed outright (SIGKILL) loses its runs to the other workers once their leases
    expire; they resume at the next node.
    """
    if flow:
        flows = [_load(text) for text in flow]
    else:
        refs = declared_refs()
        if not refs:
            raise CliError("a worker needs the flows it may run: --flow package.module:attr "
                           "(repeatable), or declare them in ./pyproject.toml "
                           f"([tool.purpose-agent] flows = [...]) or ${ENV_VAR}", EXIT_USAGE)
        flows = [ref.load() for ref in refs]
    cp = open_store(resolve_url(db))
    pool = Worker(cp, flows=flows, queues=queue or [DEFAULT_QUEUE], concurrency=concurrency,
                  lease_ttl=lease, poll_interval=poll, takeover_limit=takeover_limit)
    _log_to_stderr()

    def stop(signum: int, _frame: FrameType | None) -> None:
        logging.getLogger("purpose_agent.worker").info(
            "%s: stopping; runs in flight finish their node and go back to their queue",
            signal.Signals(signum).name)
        pool.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print(f"worker {pool.id} serving flows {', '.join(pool.flows)} on queues "
          f"{', '.join(pool.queues)} (concurrency {concurrency}); SIGTERM or Ctrl-C stops it",
          flush=True)
    pool.run()
    done = ", ".join(f"{n} {what}" for what, n in pool.counts.items() if n) or "no runs"
    print(f"worker {pool.id} stopped: {done}", flush=True)


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    logger = logging.getLogger("purpose_agent.worker")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def worker_row(info: WorkerInfo, now: float) -> dict[str, Any]:
    return {**info.to_dict(), "state": worker_state(info, now)}


@app.command()
def workers(as_json: JsonOption = False, db: DbOption = None) -> None:
    """List the workers that served this store: id, state, runs in flight, queues, flows."""
    url = resolve_url(db)
    queues = queue_store(open_store(url, read_only=True))
    now = queues.now()
    found = queues.list_workers()
    if as_json:
        stdout_json([worker_row(info, now) for info in found])
        return
    console = _console()
    if not found:
        console.print(literal(f"no workers have served {url}; start one with: "
                              f"purpose-agent worker --flow package.module:attr --db {url}"))
        return
    for info in found:
        console.print(literal(
            f"{info.id}  {worker_state(info, now):<8} in flight {info.in_flight}/"
            f"{info.concurrency}  queues {','.join(info.queues)}  flows {','.join(info.flows)}"
            f"  v{info.version}  started {relative_time(info.started_at, now)}, heartbeat "
            f"{relative_time(info.heartbeat_at, now)}"))


__all__ = ["enqueue", "worker", "workers"]
