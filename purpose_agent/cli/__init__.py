"""The ``purpose-agent`` command: run the demo, inspect, answer, resume, fork runs.

Needs the ``cli`` extra (``pip install 'purpose-agent[cli]'``: typer and rich). Every
error is one line on stderr and a documented exit code (``purpose-agent --help``).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from purpose_agent.errors import PurposeAgentError, RunBusyError


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``purpose-agent`` console script. Returns the exit code."""
    try:
        import click

        from .app import app
        from .common import EXIT_ERROR, click_exit_code, exit_code_for, fail
    except ImportError as exc:
        print(f"error: the purpose-agent command needs typer and rich ({exc}); "
              "pip install 'purpose-agent[cli]'", file=sys.stderr)
        return 1
    import typer.main

    command = typer.main.get_command(app)
    try:
        result = command.main(args=list(argv) if argv is not None else None,
                              prog_name="purpose-agent", standalone_mode=False)
    except click.ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        hint = f" (see: {ctx.command_path} --help)" if ctx is not None else ""
        fail(exc.format_message() + hint)
        return click_exit_code(exc)
    except click.exceptions.Abort:
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
    return result if isinstance(result, int) else 0


__all__ = ["main"]
