"""The ``purpose-agent`` command: run the demo, inspect, answer, resume, fork runs.

Needs the ``cli`` extra (``pip install 'purpose-agent[cli]'``: typer and rich). Every
error is one line on stderr and a documented exit code (``purpose-agent --help``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Sequence
from typing import Any, TextIO

from purpose_agent.errors import PurposeAgentError, RunBusyError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``purpose-agent`` console script. Returns the exit code."""
    try:
        import typer
        import typer.main

        from .app import app
        from .common import EXIT_ERROR, EXIT_USAGE, close_stores, exit_code_for, fail
    except ImportError as exc:
        print(f"error: the purpose-agent command needs typer and rich ({exc}); "
              "pip install 'purpose-agent[cli]'", file=sys.stderr)
        return 1
    # typer >= 0.2x vendors click; its exception classes are found through typer's own.
    usage_error = _base_named(typer.BadParameter, "UsageError")
    click_error = _base_named(typer.BadParameter, "ClickException")
    command = typer.main.get_command(app)
    stdout = sys.stdout
    sys.stdout = _GuardedStdout(stdout)
    try:
        result = command.main(args=list(argv) if argv is not None else None,
                              prog_name="purpose-agent", standalone_mode=False)
    except (StdoutClosed, BrokenPipeError):
        return _stdout_closed(stdout)
    except typer.Exit as exc:
        return int(exc.exit_code or 0)
    except click_error as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # plain `purpose-agent`: the help
            print(exc.format_message())  # type: ignore[attr-defined]
            return 0
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        fail(exc.format_message() + hint)  # type: ignore[attr-defined]
        return EXIT_USAGE if isinstance(exc, usage_error) else EXIT_ERROR
    except typer.Abort:
        fail("aborted")
        return EXIT_ERROR
    except RunBusyError as exc:
        fail(f"run busy: {exc}")
        return exit_code_for(exc)
    except PurposeAgentError as exc:
        fail(str(exc))
        return exit_code_for(exc)
    except KeyboardInterrupt:
        fail("interrupted")
        return 130
    except Exception as exc:
        if os.environ.get("PURPOSE_AGENT_DEBUG"):
            raise
        fail(f"unexpected {type(exc).__name__}: {exc} (a bug; run again with "
             "PURPOSE_AGENT_DEBUG=1 to see the traceback, and please report it)")
        return EXIT_ERROR
    finally:
        close_stores()
        if isinstance(sys.stdout, _GuardedStdout):
            sys.stdout = stdout
    return result if isinstance(result, int) else 0


class StdoutClosed(Exception):
    """Whoever read this process's stdout went away. Deliberately not an OSError:
    click turns an EPIPE OSError into exit 1 wherever it happens."""


class _GuardedStdout:
    """``sys.stdout`` whose writes raise StdoutClosed when the pipe's reader is gone, for
    every writer (print, rich, click's help)."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise StdoutClosed from None

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise StdoutClosed from None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def _stdout_closed(stdout: TextIO) -> int:
    """The reader of our stdout went away (``purpose-agent events -f | head -1``): end
    quietly with 0, as other command-line tools do."""
    # Python flushes stdout again at exit, which would fail the same way and print
    # "Exception ignored ... BrokenPipeError": point it at /dev/null first (the recipe in
    # the signal module's documentation).
    try:
        fd = stdout.fileno()
    except (OSError, ValueError):  # not a real file (a test's capture): nothing to flush
        return 0
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return 0


def _base_named(cls: type, name: str) -> type[Exception]:
    return next(base for base in cls.__mro__ if base.__name__ == name)


__all__ = ["main"]
