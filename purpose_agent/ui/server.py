"""Serving the inspector with uvicorn on a socket bound before anything is printed.

The socket is bound and listening before the address is announced, so whoever reads
the address (a person, a test, a script) can connect at once: the connection waits in
the listen backlog until uvicorn accepts it.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .app import Settings, create_app
from .security import check_bind


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host``:``port`` (port 0: a free one)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError:
        sock.close()
        raise
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def address(settings: Settings) -> str:
    host = settings.host
    shown = f"[{host}]" if ":" in host and not host.startswith("[") else host
    if shown in ("0.0.0.0", "[::]"):
        shown = socket.gethostname()
    return f"http://{shown}:{settings.port}/"


def uvicorn_config(app: Any) -> Any:
    """How the inspector is served. A live page holds a stream open (see ``live``):
    shutting down waits for streams at most ``timeout_graceful_shutdown`` seconds."""
    import uvicorn

    return uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                          server_header=False, timeout_graceful_shutdown=2)


def serve(settings: Settings, *, announce: Callable[[str], None] = print) -> None:
    """Serve until interrupted. Refuses (UnsafeBind) a non-loopback host without a token;
    ``announce`` is told the address once the socket listens."""
    import uvicorn

    check_bind(settings.host, settings.token)
    sock = bind(settings.host, settings.port)
    settings = replace(settings, port=sock.getsockname()[1])
    app = create_app(settings)
    announce(address(settings))
    uvicorn.Server(uvicorn_config(app)).run(sockets=[sock])


__all__ = ["address", "bind", "serve", "uvicorn_config"]
