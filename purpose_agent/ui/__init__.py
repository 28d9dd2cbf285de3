"""The local web inspector: ``purpose-agent ui`` (needs the ``ui`` extra).

A client of the store API like the command line, and built on the same code below it:
runs, an inbox of paused runs' questions, and each run's timeline, transcript, state
and events, with the actions of ``purpose-agent approve / reject / resume / cancel /
fork / delete``. See :mod:`purpose_agent.ui.security` for what guards it.
"""

from __future__ import annotations

from .app import Settings, create_app
from .server import serve

__all__ = ["Settings", "create_app", "serve"]
