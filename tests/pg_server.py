"""A throwaway PostgreSQL cluster for the test session, started from the server binaries.

``initdb`` + ``pg_ctl`` in a temporary directory, listening on a Unix socket in that
directory and on a free port of 127.0.0.1 (where every login needs its password, as a
newcomer's server over the network would), ``fsync`` left on: the tests check
durability.
initdb refuses to run as root, so as root the cluster belongs to the ``postgres`` user
(as in CI); as anyone else it is the caller's.

``$PURPOSE_AGENT_TEST_PG`` (a ``postgresql://`` URL of a database the tests may create
schemas and databases in) is used instead when set.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, urlencode, urlsplit

ENV_URL = "PURPOSE_AGENT_TEST_PG"
SERVICE_USER = "postgres"  # who owns the cluster when the tests run as root


def find_bindir() -> Path | None:
    """The newest installed server's bin directory (Debian layout first), or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_owner(args: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return args
    return ["runuser", "-u", SERVICE_USER, "--", *args]


@dataclass
class Server:
    """A PostgreSQL server the tests may use: ``url(...)`` names a database on it."""

    base_url: str  # a URL of its admin database (postgres)
    directory: Path | None = None  # the cluster's directory when this session started it
    bindir: Path | None = None
    tcp_port: int | None = None  # its loopback port, when this session started it
    _made: set[str] = field(default_factory=set)

    def url(self, database: str | None = None, **options: str) -> str:
        """This server's URL with another database and extra query options."""
        parts = urlsplit(self.base_url)
        path = f"/{quote(database)}" if database is not None else parts.path
        query = "&".join(q for q in (parts.query, urlencode(options)) if q)
        # Not urlunsplit: it drops the '//' of an empty host (postgresql:///db?host=/dir).
        return f"{parts.scheme}://{parts.netloc}{path}" + (f"?{query}" if query else "")

    def tcp_url(self, user: str, password: str, database: str = "postgres") -> str:
        """A URL over TCP to 127.0.0.1, where the password is checked (scram-sha-256)."""
        assert self.tcp_port is not None, "only a cluster this session started has one"
        return (f"postgresql://{quote(user)}:{quote(password, safe='')}@127.0.0.1:"
                f"{self.tcp_port}/{quote(database)}")

    def admin(self, sql: str) -> None:
        """Run one statement on the admin database (autocommit: CREATE DATABASE needs it)."""
        import psycopg

        with psycopg.connect(self.base_url, autocommit=True) as conn:
            conn.execute(sql)  # only names this module makes up, never user input

    def new_database(self) -> str:
        """A fresh, empty database; returns its URL."""
        name = f"t_{uuid.uuid4().hex[:16]}"
        self.admin(f'CREATE DATABASE "{name}" TEMPLATE template0')
        self._made.add(name)
        return self.url(name)

    def stop(self) -> None:
        if self.directory is None or self.bindir is None:
            return
        subprocess.run(_as_owner([str(self.bindir / "pg_ctl"), "stop", "-D",
                                  str(self.directory / "data"), "-m", "immediate", "-w"]),
                       capture_output=True, timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_cluster(bindir: Path) -> Server:
    """initdb a new cluster in a temporary directory and start it; returns its Server."""
    # /tmp, not the test's tmp_path: the postgres user must be able to reach it, and a
    # Unix socket path is limited to ~100 bytes.
    directory = Path(tempfile.mkdtemp(prefix="pa-pg-", dir="/tmp"))
    data, log = directory / "data", directory / "server.log"
    if os.geteuid() == 0:
        shutil.chown(directory, SERVICE_USER)
    try:
        _run([str(bindir / "initdb"), "-D", str(data), "-U", SERVICE_USER,
              "--auth=trust", "--no-instructions", "-E", "UTF8", "--locale=C.UTF-8",
              # initdb's own fsync of the new files; the server keeps fsync on.
              "--no-sync"])
        # Passwords are checked for every user but the cluster's owner on the socket, and
        # for everyone over TCP, so the tests can see a wrong password refused.
        (data / "pg_hba.conf").write_text(
            f"local all {SERVICE_USER} trust\nlocal all all scram-sha-256\n"
            "host all all 127.0.0.1/32 scram-sha-256\n", encoding="utf-8")
        port = _start(bindir, directory)
    except BaseException:
        text = log.read_text(errors="replace") if log.exists() else ""
        shutil.rmtree(directory, ignore_errors=True)
        if text:
            raise RuntimeError(f"the test PostgreSQL server did not start:\n{text}") from None
        raise
    url = (f"postgresql:///{SERVICE_USER}?"
           + urlencode({"host": str(directory), "user": SERVICE_USER, "port": str(port)}))
    return Server(url, directory=directory, bindir=bindir, tcp_port=port)


def _start(bindir: Path, directory: Path) -> int:
    """Start the server on a free loopback port; returns the port. Another process may
    take the port between our probe and the server's bind: then try another one."""
    for attempt in range(5):
        port = _free_port()
        # fsync stays on (the default): durability is what these tests are about. More
        # connections than the default 100: every store holds a small pool, and many
        # tests open several stores and processes.
        options = (f"-c listen_addresses='127.0.0.1' -c port={port} "
                   f"-c unix_socket_directories='{directory}' "
                   "-c max_connections=400 -c shared_buffers=32MB")
        try:
            _run([str(bindir / "pg_ctl"), "start", "-D", str(directory / "data"), "-l",
                  str(directory / "server.log"), "-w", "-t", "60", "-o", options])
            return port
        except RuntimeError:
            if attempt == 4 or "could not bind" not in _log(directory):
                raise
    raise AssertionError("unreachable")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _log(directory: Path) -> str:
    log = directory / "server.log"
    return log.read_text(errors="replace") if log.exists() else ""


def _run(args: list[str]) -> None:
    proc = subprocess.run(_as_owner(args), capture_output=True, text=True, timeout=120)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed ({proc.returncode}):\n"
                           f"{proc.stdout}{proc.stderr}")


def server_from_environment() -> Server | None:
    url = os.environ.get(ENV_URL)
    return Server(url) if url else None
