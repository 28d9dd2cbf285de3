"""The ``purpose-agent`` command."""

from __future__ import annotations

import sys


def main() -> int:
    """Entry point of the ``purpose-agent`` console script."""
    print("purpose-agent: the command line arrives with the CLI issue", file=sys.stderr)
    return 2
