"""What every command shares: exit codes, opening the store, JSON arguments, errors."""

from __future__ import annotations

import json
import re
import shlex
import sys
from typing import Annotated, Any

import typer

from purpose_agent.errors import (
    FlowChangedError,
    FlowImportError,
    InvalidRunId,
    LeaseError,
    PurposeAgentError,
    QueueError,
    RunBusyError,
    RunNotFound,
    StoreError,
    StoreNotFound,
)
from purpose_agent.runtime import jsonutil
from purpose_agent.runtime.checkpoint import (
    BaseCheckpointer,
    default_url,
    open_checkpointer,
    parse_store_url,
    validate_run_id,
)

from .render import clean

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_FOUND = 3
EXIT_BUSY = 4
EXIT_STORE = 5
EXIT_FLOW = 6

EXIT_CODES_HELP = """Exit codes:

\b
  0  ok (a run left paused, waiting for a person, is ok too)
  1  error, or the run failed
  2  bad usage: unknown option, bad JSON in --answer / --set / --data, invalid run
     id, bad queue name or --delay
  3  no such run
  4  the run is busy: another live process is advancing it
  5  the store cannot be opened, read or written: no store at that path, not a
     purpose-agent store, unreadable, or from a newer version
  6  the flow cannot be imported, is not allowed here (give it with --flow), or
     no longer matches the run
"""

DbOption = Annotated[str | None, typer.Option(
    "--db", metavar="URL",
    help="The run store: path.db or sqlite:///path.db (relative to the working "
         "directory), sqlite:////abs/path.db (absolute), sqlite:///:memory:, jsonl:///dir "
         "(jsonl:////abs/dir), memory://, or postgresql://user@host/db. Default: $PURPOSE_AGENT_DB, else "
         "./.purpose_agent/runs.db.",
    show_default=False)]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]


class CliError(PurposeAgentError):
    """An error the command line reports itself, with its exit code."""

    def __init__(self, message: str, code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.code = code


def exit_code_for(exc: PurposeAgentError) -> int:
    """The documented exit code for an error."""
    if isinstance(exc, CliError):
        return exc.code
    for kind, code in ((RunNotFound, EXIT_NOT_FOUND), (RunBusyError, EXIT_BUSY),
                       (LeaseError, EXIT_BUSY), (StoreError, EXIT_STORE),
                       (InvalidRunId, EXIT_USAGE), (QueueError, EXIT_USAGE),
                       (FlowImportError, EXIT_FLOW),
                       (FlowChangedError, EXIT_FLOW)):
        if isinstance(exc, kind):
            return code
    return EXIT_ERROR


def one_line(text: str) -> str:
    """``text`` on one line (errors are one line on stderr), control characters made
    visible (an error message may quote a model's output)."""
    return clean(" ".join(str(text).split()))


def fail(message: str) -> None:
    """Print ``error: message`` on stderr, on one line."""
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def resolve_url(db: str | None) -> str:
    """The store URL a command uses."""
    return db or default_url()


_AGE = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_age(text: str) -> float:
    """An age such as ``30d``, ``12h``, ``45m``, ``90s`` or ``2w``, in seconds."""
    found = _AGE.fullmatch(text.strip().lower())
    if found is None:
        hint = f" (a unit is needed: {text.strip()}d for days)" if text.strip().isdigit() \
            else ""
        raise CliError(f"--older-than {text!r} is not an age: use a number and a unit, "
                       f"s, m, h, d or w, as in 30d or 12h{hint}", EXIT_USAGE)
    return float(found.group(1)) * _SECONDS[found.group(2)]


def store_exists(url: str) -> bool:
    """False when ``url`` names a SQLite file or JSONL directory that does not exist yet."""
    parsed = parse_store_url(url)
    return parsed.path is None or parsed.path.exists()


def open_store(url: str, *, read_only: bool = False) -> BaseCheckpointer:
    """Open the store (``open_checkpointer``); StoreError names what was wrong.

    Commands that only read (runs, show, events, transcript) pass ``read_only=True``: they
    never create, upgrade or change a store, and a missing one is StoreNotFound.
    The store is closed when the command ends (:func:`close_stores`), however it ends.
    """
    cp = open_checkpointer(url, read_only=read_only)
    _opened.append(cp)
    return cp


# The stores this command opened: closed by main() on every way out, so a PostgreSQL
# pool's threads never outlive the command (left to the pool's __del__ at interpreter
# exit, they printed "Exception ignored ... Traceback" under an error line).
_opened: list[BaseCheckpointer] = []


def close_stores() -> None:
    """Close every store :func:`open_store` opened (a store's close is idempotent)."""
    while _opened:
        try:
            _opened.pop().close()
        except Exception:  # exiting anyway: the command's outcome and code stand
            pass


def require_store(url: str, run_id: str, *, read_only: bool = False) -> BaseCheckpointer:
    """Open the store for a command about one run; StoreNotFound if there is no store
    (rather than creating an empty database just to say the run is not there)."""
    validate_run_id(run_id)
    parsed = parse_store_url(url)
    if parsed.path is not None and not parsed.path.exists():
        raise StoreNotFound(f"no store at {parsed.path} (so no run {run_id!r}); "
                            "check --db / $PURPOSE_AGENT_DB")
    return open_store(url, read_only=read_only)


def require_run(url: str, run_id: str, *, read_only: bool = False) -> BaseCheckpointer:
    """Open the store and check that it has ``run_id`` (RunNotFound otherwise)."""
    cp = require_store(url, run_id, read_only=read_only)
    if cp.run_info(run_id) is None:
        raise not_found(run_id, url)
    return cp


def not_found(run_id: str, url: str) -> RunNotFound:
    return RunNotFound(f"no run {run_id!r} in {url}; `purpose-agent runs --db {url}` lists them")


def parse_json(option: str, text: str, *, set_key: str | None = None) -> Any:
    """Strict JSON from a command-line option, or a usage error that says how to quote.

    The examples in the error are commands that work as typed: ``--answer '"yes"'``, or
    for ``--set`` (``set_key``) ``--set 'draft="yes"'``, key and value in one argument.
    """
    try:
        value = jsonutil.loads(text)
        jsonutil.check(value, option)
    except (ValueError, PurposeAgentError) as exc:
        samples = ('"yes"', "true", '{"k": 1}')
        examples = ", ".join(
            shlex.join(["--set", f"{set_key}={sample}"] if set_key is not None
                       else [option, sample]) for sample in samples)
        raise CliError(
            f"{option} is not valid JSON ({one_line(str(exc))}): {text!r}; strings need "
            f"quotes, e.g. {examples}", EXIT_USAGE) from None
    return value


def parse_sets(items: list[str] | None) -> dict[str, Any] | None:
    """``--set key=JSON`` options as a dict (None when there are none)."""
    if not items:
        return None
    out: dict[str, Any] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise CliError(f"--set expects key=JSON, got {item!r}; e.g. --set "
                           "'draft=\"new text\"' or --set retries=3", EXIT_USAGE)
        out[key] = parse_json(f"--set {key}", text, set_key=key)
    return out


def command_for(*words: str, url: str) -> str:
    """A copy-pasteable ``purpose-agent`` command line for the same store."""
    return shlex.join(["purpose-agent", *words, "--db", url])


def is_interactive() -> bool:
    """True when a person can answer a prompt (stdin and stdout are terminals)."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def stdout_json(value: Any) -> None:
    """Print ``value`` as indented, ASCII-only JSON on stdout (no colour, no markup)."""
    sys.stdout.write(json.dumps(value, indent=2) + "\n")  # ASCII: no raw control bytes
    sys.stdout.flush()


__all__ = [
    "EXIT_BUSY", "EXIT_CODES_HELP", "EXIT_ERROR", "EXIT_FLOW", "EXIT_NOT_FOUND", "EXIT_OK",
    "EXIT_STORE", "EXIT_USAGE", "CliError", "DbOption", "JsonOption", "close_stores",
    "command_for", "exit_code_for", "fail", "is_interactive", "not_found", "one_line",
    "open_store", "parse_age", "parse_json", "parse_sets", "require_run", "require_store",
    "resolve_url", "stdout_json", "store_exists",
]
