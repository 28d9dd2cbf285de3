"""Who may talk to the inspector, and which requests may change anything.

The page approves tool calls, so it is guarded like a bank's:

- it binds 127.0.0.1 unless told otherwise, and any other bind needs a token that every
  request then carries (``Authorization: Bearer``, or a cookie set by opening the page
  once with ``?token=``);
- the ``Host`` header must name what the server is bound to, so a hostile web page whose
  name was re-pointed at 127.0.0.1 (DNS rebinding) is refused;
- every state-changing request is a POST carrying a CSRF token derived from this
  server's secret and the browser's session cookie; GET never changes anything;
- no CORS headers are ever sent, and a Content-Security-Policy without inline scripts
  means that even text which escaped escaping could not run.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import socket
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qsl, urlencode

from purpose_agent.errors import PurposeAgentError

TOKEN_ENV = "PURPOSE_AGENT_UI_TOKEN"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1")

SECURITY_HEADERS = [
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
     b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class UnsafeBind(PurposeAgentError):
    """The inspector was asked to listen beyond this machine without a token."""


def is_loopback(host: str) -> bool:
    """True for names and addresses that only this machine can reach."""
    if host.strip("[]").lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    return host.strip("[]") in ("0.0.0.0", "::", "")


def check_bind(host: str, token: str | None) -> None:
    """Refuse a bind beyond loopback without a token (UnsafeBind says what to do)."""
    if not is_loopback(host) and not token:
        raise UnsafeBind(
            f"--host {host} lets other machines reach this page, which can approve tool "
            f"calls: give a token with --token or ${TOKEN_ENV} (every request must then "
            "carry it), or keep the default --host 127.0.0.1")


def _host_names(host: str) -> set[str]:
    """The names a browser may put in ``Host`` for a server bound to ``host``."""
    bare = host.strip("[]").lower()
    if is_loopback(bare):
        return {"127.0.0.1", "localhost", "::1", bare}
    if is_wildcard(bare):
        names = {socket.gethostname().lower(), socket.getfqdn().lower(), "localhost",
                 "127.0.0.1", "::1"}
        return names
    return {bare}


@dataclass
class Guard:
    """The rules every request passes, given how the server is bound."""

    host: str
    port: int
    token: str | None = None
    secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))

    def __post_init__(self) -> None:
        check_bind(self.host, self.token)
        self.names = _host_names(self.host)
        self.any_ip = is_wildcard(self.host)
        # Cookies are per host name, not per port: two inspectors on one machine must not
        # overwrite each other's session.
        self.session_cookie = f"pa_ui_session_{self.port}"
        self.token_cookie = f"pa_ui_token_{self.port}"

    def host_allowed(self, header: str | None) -> bool:
        """True when ``Host`` names this server (name and port)."""
        if not header:
            return False
        name, port = _split_host(header)
        if port != self.port:
            return False
        if name in self.names:
            return True
        if self.any_ip:  # bound to every interface: any of this machine's addresses
            try:
                ipaddress.ip_address(name)
                return True
            except ValueError:
                return False
        return False

    def token_ok(self, presented: str | None) -> bool:
        if self.token is None:
            return True
        return presented is not None and hmac.compare_digest(
            presented.encode(), self.token.encode())

    def token_cookie_value(self) -> str:
        """What the token cookie holds: a digest, so the token itself (which may hold any
        character) is never a cookie."""
        assert self.token is not None
        return hmac.new(self.secret, b"token:" + self.token.encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, session: str) -> str:
        """The CSRF token forms of this browser session carry."""
        return hmac.new(self.secret, session.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: str | None, presented: str | None) -> bool:
        if not session or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session), presented)


def _split_host(header: str) -> tuple[str, int | None]:
    header = header.strip().lower()
    if header.startswith("["):
        name, _, rest = header[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        name, _, port_text = header.rpartition(":") if ":" in header else (header, "", "")
    try:
        port = int(port_text) if port_text else 80
    except ValueError:
        return name, None
    return name, port


def _cookies(scope: Scope) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # a malformed cookie header: treated as no cookies
                return {}
    return {name: morsel.value for name, morsel in jar.items()}


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class GuardMiddleware:
    """ASGI middleware applying :class:`Guard`: Host, token, session cookie, headers.

    The CSRF check itself needs the form, so the POST handlers make it
    (:func:`purpose_agent.ui.app` calls :meth:`Guard.csrf_ok`); this layer puts the
    session id in ``scope["state"]["session"]`` for them and for the templates.
    """

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app, self.guard = app, guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        guard = self.guard
        if not guard.host_allowed(_header(scope, b"host")):
            await _plain(send, 421, "refused: the Host header does not name this server "
                         f"(open it as http://127.0.0.1:{guard.port}/ or the name it is "
                         "bound to)")
            return
        cookies = _cookies(scope)
        set_cookies: list[str] = []
        if guard.token is not None:
            query = dict(parse_qsl(scope.get("query_string", b"").decode("latin-1")))
            bearer = _header(scope, b"authorization") or ""
            presented = bearer[7:] if bearer.lower().startswith("bearer ") else None
            remembered = cookies.get(guard.token_cookie)
            if "token" in query and guard.token_ok(query["token"]) \
                    and scope["method"] == "GET":
                # Once per browser: remember the token in a cookie, and take it out of the
                # address bar (and the history) at once.
                query.pop("token")
                location = scope["path"] + (f"?{urlencode(query)}" if query else "")
                await _redirect(send, location,
                                [_cookie(guard.token_cookie, guard.token_cookie_value())])
                return
            if not (guard.token_ok(presented) or (remembered is not None and hmac.compare_digest(
                    remembered.encode(), guard.token_cookie_value().encode()))):
                await _plain(send, 401, "this inspector needs its token: open it once as "
                             "http://HOST:PORT/?token=… or send Authorization: Bearer …")
                return
        session = cookies.get(guard.session_cookie)
        if not session or len(session) != 43:
            session = secrets.token_urlsafe(32)
            set_cookies.append(_cookie(guard.session_cookie, session))
        scope.setdefault("state", {})["session"] = session

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += SECURITY_HEADERS
                headers += [(b"set-cookie", c.encode("latin-1")) for c in set_cookies]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _cookie(name: str, value: str) -> str:
    return f"{name}={value}; Path=/; HttpOnly; SameSite=Strict"


async def _plain(send: Send, status: int, text: str) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *SECURITY_HEADERS]})
    await send({"type": "http.response.body", "body": text.encode() + b"\n"})


async def _redirect(send: Send, location: str, cookies: list[str]) -> None:
    headers = [(b"location", location.encode("latin-1")), *SECURITY_HEADERS]
    headers += [(b"set-cookie", c.encode("latin-1")) for c in cookies]
    await send({"type": "http.response.start", "status": 303, "headers": headers})
    await send({"type": "http.response.body", "body": b""})


__all__ = ["LOOPBACK_NAMES", "TOKEN_ENV", "Guard", "GuardMiddleware", "UnsafeBind",
           "check_bind", "is_loopback"]
