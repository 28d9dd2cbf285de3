"""The ``purpose-agent`` commands (typer). Each one is a thin layer over the library."""

from __future__ import annotations

import importlib.metadata
import os
import shlex
import sys
import time
from typing import Annotated

import typer
from rich.console import Console
from rich.prompt import Confirm

import purpose_agent
from purpose_agent.errors import RunStateError, StoreNotFound
from purpose_agent.flow.children import children_of
from purpose_agent.flow.operations import cancel_run, fork_run
from purpose_agent.flow.plan import MISSING
from purpose_agent.runtime.checkpoint import FINISHED
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus
from purpose_agent.runtime.transcript import render_transcript
from purpose_agent.runtime.usage import usage_totals

from . import queue_view, running
from .common import (
    EXIT_CODES_HELP,
    EXIT_USAGE,
    CliError,
    DbOption,
    JsonOption,
    is_interactive,
    not_found,
    open_store,
    parse_age,
    parse_json,
    parse_sets,
    require_run,
    resolve_url,
    stdout_json,
    store_exists,
)
from .render import (
    cursor_text,
    literal,
    parse_cursor,
    print_state,
    run_row,
    runs_table,
    stalled,
    state_json,
)

app = typer.Typer(
    name="purpose-agent",
    help="Durable AI agent runs: start the demo, list and inspect runs, answer a paused "
         "run, resume one after a crash, fork, cancel or delete it.\n\n" + EXIT_CODES_HELP,
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)

EVENT_KINDS = tuple(str(kind) for kind in EventKind)

RunArg = Annotated[str, typer.Argument(metavar="RUN", help="The run id.", show_default=False)]
FlowOption = Annotated[str | None, typer.Option(
    "--flow", metavar="REF", help="The flow to continue the run with, as package.module:attr "
    "or path/to/file.py:attr. Without it: the flow the run recorded, only if it is allowed "
    "here ([tool.purpose-agent] flows in ./pyproject.toml, $PURPOSE_AGENT_FLOWS "
    "(comma-separated), or the demo's); a store never chooses the code that runs.",
    show_default=False)]
SetOption = Annotated[list[str] | None, typer.Option(
    "--set", metavar="KEY=JSON", help="Replace a data key first (repeatable), e.g. "
    "--set 'draft=\"new text\"'.", show_default=False)]


def _console() -> Console:
    # Piped output (scripts, CI logs) gets 120 columns rather than rich's 80, unless
    # $COLUMNS says otherwise; --json is the format meant for programs.
    width = None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120
    return Console(highlight=False, emoji=False, soft_wrap=True, width=width)


def _version() -> str:
    try:
        return importlib.metadata.version("purpose-agent")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree
        return purpose_agent.__version__


def _print_version(value: bool) -> None:
    if value:
        print(f"purpose-agent {_version()}")
        raise typer.Exit(0)


@app.callback()
def _options(
    version: Annotated[bool, typer.Option(
        "--version", "-V", help="Print the version of purpose-agent and exit.",
        callback=_print_version, is_eager=True)] = False,
) -> None:
    """Durable AI agent runs."""


@app.command()
def demo(
    crash_at: Annotated[str | None, typer.Option(
        "--crash-at", metavar="NODE", help="Kill this process with SIGKILL inside NODE, "
        "after its first durable step; the resume command is printed just before.",
        show_default=False)] = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Approve the reply automatically.")]
    = False,
    run_id: Annotated[str | None, typer.Option("--run-id", metavar="ID",
                                               help="Id of the new run.")] = None,
    db: DbOption = None,
) -> None:
    """Run the bundled demo flow offline (no network, no API key).

    Incident triage: fetch_logs → classify → draft_reply → approve → send. Durable steps
    append to demo-effects.log next to the store, so after a crash and a resume you can
    see no side effect ran twice. Without --yes it asks for approval on a terminal, or
    leaves the run paused and prints how to approve it.
    """
    raise typer.Exit(running.run_demo(_console(), resolve_url(db), crash_at=crash_at, yes=yes,
                                      run_id=run_id))


@app.command()
def runs(
    status: Annotated[RunStatus | None, typer.Option(
        "--status", "-s", help="Only runs with this status.", case_sensitive=False,
        show_default=False)] = None,
    flow: Annotated[str | None, typer.Option(
        "--flow", "-f", help="Only runs of this flow.", show_default=False)] = None,
    search: Annotated[str | None, typer.Option(
        "--search", "-q", help="Only runs whose id contains this text (case-sensitive).",
        show_default=False)] = None,
    after: Annotated[str | None, typer.Option(
        "--after", help="The runs older than this cursor (printed under a full listing).",
        show_default=False)] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="At most N runs.")] = 20,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """List runs, newest first: id, flow, status, current node, steps, last update; for
    runs from a queue, the worker advancing one, or why one waits."""
    url = resolve_url(db)
    try:
        cursor = parse_cursor(after or "")
    except ValueError:
        raise CliError(f"--after {after!r} is not a cursor; pass the one a full listing "
                       "prints", EXIT_USAGE) from None
    cp = open_store(url, read_only=True)
    try:
        infos = cp.list_run_infos(status=status, flow=flow, search=search, after=cursor,
                                  limit=limit)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    queued = queue_view.queue_details(cp, infos)
    if as_json:
        stdout_json([{**run_row(info), **({"queue": queued[info.run_id]}
                                          if info.run_id in queued else {})}
                     for info in infos])
    elif not infos:
        _console().print(literal(f"no runs in {url}"
                                 + (f" with status {status}" if status else "")
                                 + (f" of flow {flow}" if flow else "")
                                 + (f" matching {search}" if search else "")
                                 + (" older than that cursor" if after else "")
                                 + "; start one with: purpose-agent demo"))
    else:
        console = _console()
        console.print(runs_table(infos, console.width))
        for info in infos:
            if info.run_id in queued and (info.status is RunStatus.QUEUED
                                          or info.status is RunStatus.RUNNING):
                console.print(literal(queue_view.describe(info.run_id, queued[info.run_id])))
        if len(infos) == limit:
            console.print(literal(f"the newest {limit} runs; older ones: --after "
                                  f"{shlex.quote(cursor_text(infos[-1]))}", style="dim"))


@app.command()
def show(run_id: RunArg, as_json: JsonOption = False, db: DbOption = None) -> None:
    """Show a run: status, data, completed nodes, what it waits for, lease, error, its
    parent and child runs."""
    url = resolve_url(db)
    cp = require_run(url, run_id, read_only=True)
    info = cp.run_info(run_id)
    state = cp.load_latest(run_id)
    if state is None:
        raise not_found(run_id, url)
    usage = usage_totals(cp.list_events(run_id, kinds=[EventKind.MODEL_RESPONSE.value]))
    children = children_of(cp, run_id)
    if as_json:
        stdout_json(state_json(state, info, usage, children))
    else:
        print_state(_console(), state, info, usage, children)


@app.command()
def transcript(run_id: RunArg, db: DbOption = None) -> None:
    """Print a run's readable transcript, rebuilt from its events alone."""
    url = resolve_url(db)
    cp = require_run(url, run_id, read_only=True)
    _console().print(literal(render_transcript(cp.list_events(run_id)), end=""))


@app.command()
def resume(
    run_id: RunArg,
    flow: FlowOption = None,
    answer: Annotated[str | None, typer.Option(
        "--answer", metavar="JSON", help="Answer the run's question, or give the result of "
        "an in-doubt step, e.g. --answer true or --answer '\"yes\"'.", show_default=False)]
    = None,
    sets: SetOption = None,
    retry_in_doubt: Annotated[bool, typer.Option(
        "--retry-in-doubt", help="Run an in-doubt at-most-once step again.")] = False,
    db: DbOption = None,
) -> None:
    """Continue a run where it stopped: after a crash, a pause, a failure or a fork.

    Completed nodes and durable steps are not run again: their results come from the
    journal.
    """
    value = parse_json("--answer", answer) if answer is not None else MISSING
    update = parse_sets(sets)
    raise typer.Exit(running.resume_run(_console(), resolve_url(db), run_id, flow_ref=flow,
                                        answer=value, update=update,
                                        retry_in_doubt=retry_in_doubt))


@app.command()
def approve(
    run_id: RunArg,
    answer: Annotated[str, typer.Option("--answer", metavar="JSON",
                                        help="The answer to give.")] = "true",
    flow: FlowOption = None,
    db: DbOption = None,
) -> None:
    """Answer a paused run's question with true (or --answer JSON) and continue it."""
    value = parse_json("--answer", answer)
    raise typer.Exit(running.answer_run(_console(), resolve_url(db), run_id, value,
                                        verb="approve", flow_ref=flow))


@app.command()
def reject(run_id: RunArg, flow: FlowOption = None, db: DbOption = None) -> None:
    """Answer a paused run's question with false and continue it."""
    raise typer.Exit(running.answer_run(_console(), resolve_url(db), run_id, False,
                                        verb="reject", flow_ref=flow))


@app.command()
def send(
    run_id: RunArg,
    topic: Annotated[str, typer.Argument(metavar="TOPIC", help="The topic the run waits "
                                         "on (ctx.wait_for(TOPIC)).", show_default=False)],
    payload: Annotated[str, typer.Argument(metavar="JSON", help="The message, as JSON, "
                                           "e.g. '{\"ok\": true}'.", show_default=False)],
    dedup_key: Annotated[str | None, typer.Option(
        "--dedup-key", metavar="KEY", help="Drop this message if the run already has one "
        "with this key.", show_default=False)] = None,
    flow: FlowOption = None,
    db: DbOption = None,
) -> None:
    """Send a message to a run: ctx.wait_for(TOPIC) in it returns JSON.

    Kept in order, delivered exactly once. A run waiting for it is woken: a queued run
    goes back to the workers, a run started in-process is resumed here.
    """
    value = parse_json("JSON", payload)
    raise typer.Exit(running.send_to_run(_console(), resolve_url(db), run_id, topic, value,
                                         dedup_key=dedup_key, flow_ref=flow))


@app.command()
def cancel(run_id: RunArg, db: DbOption = None) -> None:
    """Cancel a run: at once if no live process advances it, else at its next node."""
    url = resolve_url(db)
    state = cancel_run(require_run(url, run_id), run_id)
    if state.status is RunStatus.CANCELLED:
        _console().print(literal(f"run {run_id} is cancelled"))
    else:
        _console().print(literal(f"cancel requested: the process advancing run {run_id} "
                                 "stops at its next node boundary"))


@app.command()
def fork(
    run_id: RunArg,
    at: Annotated[int, typer.Option("--at", metavar="N", min=0, help="Copy the state right "
                                    "after node execution N (0: the start).")],
    sets: SetOption = None,
    new_id: Annotated[str | None, typer.Option("--id", metavar="NEW",
                                               help="Id of the new run.")] = None,
    db: DbOption = None,
) -> None:
    """Time travel: a new run from the state after node execution N of RUN (RUN is
    untouched)."""
    url = resolve_url(db)
    update = parse_sets(sets)
    cp = require_run(url, run_id)
    state = fork_run(cp, run_id, at_step=at, update=update, new_run_id=new_id)
    console = _console()
    console.print(literal(f"forked run {run_id} after node execution {at} into {state.run_id} "
                          f"({state.status}, next node {state.current_node or '-'})"))
    if state.status is RunStatus.PENDING:
        console.print(literal("advance it: " + running.resume_command(state, url=url)))


@app.command()
def delete(
    run_id: RunArg,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")]
    = False,
    db: DbOption = None,
) -> None:
    """Delete a run and everything journaled for it."""
    url = resolve_url(db)
    cp = require_run(url, run_id)
    info = cp.run_info(run_id)
    if info is None:
        raise not_found(run_id, url)
    if info.status is RunStatus.RUNNING and not stalled(info):
        raise RunStateError(f"run {run_id!r} is being advanced by {info.owner}; cancel it "
                            "first, or wait until it stops")
    if not yes:
        if not is_interactive():
            raise CliError(f"refusing to delete run {run_id!r} without --yes", EXIT_USAGE)
        if not Confirm.ask(f"Delete run {run_id} ({info.status}) and its journal?",
                           console=_console(), default=False):
            _console().print(literal(f"kept run {run_id}"))
            raise typer.Exit(1)
    cp.delete_run(run_id)
    _console().print(literal(f"deleted run {run_id}"))


@app.command()
def prune(
    older_than: Annotated[str, typer.Option(
        "--older-than", metavar="AGE", show_default=False,
        help="Delete finished runs last updated more than AGE ago: 30d, 12h, 45m, 90s, 2w.")],
    status: Annotated[list[RunStatus] | None, typer.Option(
        "--status", "-s", metavar="STATUS", case_sensitive=False, show_default=False,
        help="Only finished runs with this status: completed, failed or cancelled "
             "(repeatable). Default: all three.")] = None,
    as_json: JsonOption = False,
    db: DbOption = None,
) -> None:
    """Retention: delete finished runs (completed, failed, cancelled) last updated more
    than AGE ago, with everything journaled for them, a batch per transaction. Running,
    paused and pending runs are never pruned, however old."""
    url = resolve_url(db)
    age = parse_age(older_than)
    statuses = sorted(str(s) for s in (status or FINISHED))
    unfinished = [s for s in statuses if RunStatus(s) not in FINISHED]
    if unfinished:
        raise CliError(f"only finished runs (completed, failed, cancelled) are pruned, not "
                       f"{', '.join(unfinished)} ones", EXIT_USAGE)
    if not store_exists(url):  # nothing to delete, and no empty store created to say so
        _console().print(literal(f"no store at {url}; nothing to prune"))
        return
    with open_store(url) as cp:
        pruned = cp.prune_runs(updated_before=time.time() - age, statuses=statuses)
    if as_json:
        stdout_json({"pruned": pruned, "statuses": statuses})
        return
    runs = "run" if pruned == 1 else "runs"
    _console().print(literal(f"pruned {pruned} {runs} ({', '.join(statuses)}) last updated "
                             f"more than {older_than} ago from {url}"))


@app.command()
def ui(
    host: Annotated[str, typer.Option(
        "--host", metavar="HOST", help="Address to listen on. Anything but loopback needs "
        "--token.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", min=0, max=65535,
                                      help="Port to listen on (0: a free one).")] = 8765,
    token: Annotated[str | None, typer.Option(
        "--token", metavar="TOKEN", envvar="PURPOSE_AGENT_UI_TOKEN", help="Every request "
        "must carry it (open the page once as URL?token=TOKEN, or send Authorization: "
        "Bearer TOKEN). Required with a --host other than loopback. Default: "
        "$PURPOSE_AGENT_UI_TOKEN.", show_default=False)] = None,
    read_only: Annotated[bool, typer.Option(
        "--read-only", help="Open the store read-only; the page offers no actions.")] = False,
    flows: Annotated[list[str] | None, typer.Option(
        "--flow", metavar="REF", help="A flow the page may run when you approve, resume or "
        "retry (repeatable), as package.module:attr or path/to/file.py:attr; besides the "
        "project's declared flows and the demo's. A run's record only selects among them.",
        show_default=False)] = None,
    db: DbOption = None,
) -> None:
    """Inspect and steer runs in the browser: runs, an inbox of questions, timelines.

    Needs the ui extra (pip install 'purpose-agent[ui]'). Listens on 127.0.0.1 unless
    told otherwise; approving from the page runs the flow's code in this process.
    """
    try:
        from purpose_agent.ui import Settings, serve
        from purpose_agent.ui.security import UnsafeBind
    except ImportError as exc:
        raise CliError(f"purpose-agent ui needs starlette, uvicorn and jinja2 ({exc}); "
                       "pip install 'purpose-agent[ui]'") from None
    url = resolve_url(db)
    if not store_exists(url):
        raise StoreNotFound(f"no store at {url}; start a run first (purpose-agent demo "
                            "--db URL) or check --db / $PURPOSE_AGENT_DB")
    settings = Settings(url=url, host=host, port=port, token=token or None,
                        read_only=read_only, flow_refs=tuple(flows or ()))
    console = _console()

    def announce(address: str) -> None:
        console.print(literal(f"inspector on {address} (store {url}"
                              + (", read-only" if read_only else "") + "); Ctrl-C stops it"))
        sys.stdout.flush()
    try:
        serve(settings, announce=announce)
    except KeyboardInterrupt:  # Ctrl-C is how a person stops it: not an error
        console.print(literal("inspector stopped"))
    except UnsafeBind as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except OSError as exc:
        raise CliError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


# The queue commands register themselves on `app` (enqueue, worker, workers).
from . import events_cmd, queue_cmds  # noqa: E402,F401
