"""The inspector's routes (Starlette): pages, their live fragments, and the actions.

Every page is server-rendered from Jinja templates with autoescaping on; a run's data,
model output and tool arguments are always text in the page, never markup. Pages that
change while a run advances hold live fragments (``?fragment=…``), which the server
pushes as server-sent events when they change (``&stream=1``, :mod:`.live`) and the small
script in ``static/app.js`` swaps in; nothing else runs in the browser.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from jinja2 import Environment, PackageLoader
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from purpose_agent.cli.render import parse_cursor, state_json
from purpose_agent.errors import InvalidRunId, PurposeAgentError, RunNotFound, StoreError
from purpose_agent.flow import Flow
from purpose_agent.flow.plan import MISSING
from purpose_agent.runtime.checkpoint import (
    BaseCheckpointer,
    open_checkpointer,
    validate_run_id,
)
from purpose_agent.runtime.events import EventKind
from purpose_agent.runtime.state import RunStatus
from purpose_agent.runtime.usage import usage_totals

from . import live, views
from .actions import ActionRefused, Actions, parse_json_field, parse_update
from .security import Guard, GuardMiddleware
from .timeline import duration_text

TABS = ("timeline", "transcript", "state", "events")
_FLOW_VERBS = ("approve", "reject", "answer", "resume", "retry", "record")
VERBS = (*_FLOW_VERBS, "cancel", "fork", "delete")
MAX_FORM_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class Settings:
    """How ``purpose-agent ui`` was started."""

    url: str
    host: str = "127.0.0.1"
    port: int = 8765
    token: str | None = None
    read_only: bool = False
    flow_refs: tuple[str, ...] = ()


def _filter_text(value: str | None) -> str:
    """A filter as typed: trimmed, without NUL (no run id or flow name holds one)."""
    return (value or "").replace("\x00", "").strip()


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("purpose_agent.ui", "templates"), autoescape=True,
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["duration"] = duration_text
    env.filters["clock"] = lambda ts: time.strftime("%H:%M:%S", time.localtime(ts))
    env.filters["when"] = lambda ts: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))
    return env


def create_app(settings: Settings, *, checkpointer: BaseCheckpointer | None = None,
               flows: tuple[Flow, ...] = ()) -> Starlette:
    """The inspector as an ASGI app. ``checkpointer`` (else ``settings.url`` is opened,
    read-only with ``settings.read_only``) and ``flows`` (Flow objects allowed besides
    ``settings.flow_refs``) are for embedding it in a process that has them."""
    cp = checkpointer or open_checkpointer(settings.url, read_only=settings.read_only)
    store = cp
    guard = Guard(settings.host, settings.port, settings.token)
    actions = Actions(cp, settings.url, flow_refs=settings.flow_refs, flows=flows)
    env = _environment()

    def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        session = request.scope.get("state", {}).get("session", "")
        body = env.get_template(template).render(
            csrf=guard.csrf_token(session), read_only=settings.read_only,
            store=settings.url, request_path=request.url.path, **context)
        return HTMLResponse(body, status_code=status)

    async def guarded(request: Request, work: Callable[[], Response], *,
                      back: str = "/runs") -> Response:
        """``work`` in a worker thread (the store blocks); a refusal is an error page
        saying why, with a link ``back``. A fragment asked for with ``stream=1`` is
        served live (server-sent events, see :mod:`.live`)."""
        if request.query_params.get("fragment") and request.query_params.get("stream") == "1":
            return live.stream(request, work)
        error: PurposeAgentError
        try:
            return await run_in_threadpool(work)
        except (InvalidRunId, ActionRefused) as exc:
            status, error = 400, exc
        except RunNotFound as exc:
            status, error = 404, exc
        except StoreError as exc:
            status, error = 503, exc
        except PurposeAgentError as exc:  # the run's state, a flow not allowed here, …
            status, error = 409, exc
        return render(request, "error.html", status=status, back=back,
                      message=f"{type(error).__name__}: {error}")

    # ── pages ──────────────────────────────────────────────────────────────────────
    async def home(request: Request) -> Response:
        return RedirectResponse("/runs", status_code=303)

    async def runs(request: Request) -> Response:
        q = request.query_params
        status_text = q.get("status") or ""
        after = q.get("after") or ""
        try:
            status = RunStatus(status_text) if status_text else None
            parse_cursor(after)  # the same cursor text as `runs --after`
        except ValueError:
            return render(request, "error.html", status=400, back="/runs", message=(
                f"unknown status {status_text!r} or page cursor {after!r}; the statuses "
                "are " + ", ".join(s.value for s in RunStatus)))

        def work() -> Response:
            listing = views.runs_page(store, status=status, flow=_filter_text(q.get("flow")),
                                      q=_filter_text(q.get("q")), after=after)
            if q.get("format") == "json":
                return JSONResponse({"runs": listing.rows, "after": listing.after,
                                     "next_after": listing.next_after})
            query = {k: v for k, v in (("status", listing.status or ""), ("flow", listing.flow),
                                       ("q", listing.q)) if v}
            template = "_runs_rows.html" if q.get("fragment") == "rows" else "runs.html"
            return render(request, template, listing=listing, statuses=list(RunStatus),
                          query=query, urlencode=urlencode)
        return await guarded(request, work)

    async def inbox(request: Request) -> Response:
        def work() -> Response:
            items = views.inbox(store)
            if request.query_params.get("format") == "json":
                return JSONResponse({"inbox": [asdict(item) for item in items]})
            template = "_inbox_items.html" if request.query_params.get("fragment") \
                else "inbox.html"
            return render(request, template, items=items, next="/inbox")
        return await guarded(request, work)

    async def run_page(request: Request) -> Response:
        run_id = request.path_params["run_id"]
        q = request.query_params
        tab = q.get("tab") if q.get("tab") in TABS else "timeline"

        def work() -> Response:
            validate_run_id(run_id)
            header = views.run_header(store, run_id)
            if header is None:
                raise RunNotFound(f"no run {run_id!r} in {settings.url}")
            context: dict[str, Any] = {"h": header, "tab": tab, "run_id": run_id,
                                       "activity": actions.activity.get(run_id),
                                       "next": f"/runs/{run_id}"}
            if q.get("format") == "json":
                usage = usage_totals(cp.list_events(run_id,
                                                    kinds=[EventKind.MODEL_RESPONSE.value]))
                return JSONResponse(state_json(header.state, header.info, usage))
            if q.get("fragment") == "header":
                return render(request, "_run_header.html", **context)
            if tab == "events":
                context["events"] = views.events_page(
                    store, run_id, since=max(_int(q.get("since")), 0), kind=q.get("kind") or "")
                context["kinds"] = [str(k) for k in EventKind]
            elif tab == "state":
                step = q.get("step")
                context["sv"] = views.state_view(store, run_id, _int(step) if step else None)
            elif tab == "timeline":
                context["tl"], context["window"] = views.timeline_window(store, run_id)
            else:
                context["tr"], context["window"] = views.transcript_window(
                    store, run_id, since=max(_int(q.get("since")), 0))
            template = "_run_tab.html" if q.get("fragment") == "tab" else "run.html"
            return render(request, template, **context)
        return await guarded(request, work)

    # ── actions ────────────────────────────────────────────────────────────────────
    async def act(request: Request) -> Response:
        run_id, verb = request.path_params["run_id"], request.path_params["verb"]
        fields = await _form(request)
        session = request.scope.get("state", {}).get("session")
        if not guard.csrf_ok(session, fields.get("csrf")):
            return render(request, "error.html", status=403, back=f"/runs/{run_id}",
                          message="refused: this form has no valid CSRF token (reload the "
                                  "page and submit it again)")
        if settings.read_only:
            return render(request, "error.html", status=403, back=f"/runs/{run_id}",
                          message="refused: this inspector is read-only (--read-only)")
        if verb not in VERBS:
            return render(request, "error.html", status=404, back=f"/runs/{run_id}",
                          message=f"unknown action {verb!r}")
        back = fields.get("next") or f"/runs/{run_id}"
        if not back.startswith("/") or back.startswith("//"):
            back = f"/runs/{run_id}"

        def work() -> Response:
            validate_run_id(run_id)
            target = perform(run_id, verb, fields)
            return RedirectResponse(target or back, status_code=303)
        return await guarded(request, work, back=back)

    def perform(run_id: str, verb: str, fields: dict[str, str]) -> str | None:
        """Do ``verb``; returns where to go next when it is not back where we came from."""
        update = parse_update(fields.get("update", ""))
        if verb in ("approve", "reject"):
            actions.resume(run_id, verb=verb, answer=verb == "approve", update=update)
        elif verb == "answer":
            actions.resume(run_id, verb=verb, answer=parse_json_field(
                "the answer", fields.get("answer", "")), update=update)
        elif verb == "record":
            actions.resume(run_id, verb=verb, answer=parse_json_field(
                "the step's result", fields.get("answer", "")), update=update)
        elif verb == "retry":
            actions.resume(run_id, verb=verb, retry_in_doubt=True, update=update)
        elif verb == "resume":
            actions.resume(run_id, verb=verb, answer=MISSING, update=update)
        elif verb == "cancel":
            actions.cancel(run_id)
        elif verb == "fork":
            state = actions.fork(run_id, at=_int(fields.get("at")), update=update,
                                 new_id=(fields.get("new_id") or "").strip() or None)
            return f"/runs/{state.run_id}"
        elif verb == "delete":
            actions.delete(run_id, confirm=(fields.get("confirm") or "").strip())
            return "/runs"
        return None

    routes = [
        Route("/", home),
        Route("/runs", runs),
        Route("/inbox", inbox),
        Route("/runs/{run_id:str}", run_page),
        Route("/runs/{run_id:str}/{verb:str}", act, methods=["POST"]),
        Mount("/static", StaticFiles(directory=str(Path(__file__).parent / "static")),
              name="static"),
    ]
    app = Starlette(routes=routes)
    app.add_middleware(GuardMiddleware, guard=guard)
    app.state.checkpointer, app.state.actions, app.state.guard = cp, actions, guard
    return app


async def _form(request: Request) -> dict[str, str]:
    """The fields of a url-encoded form (the only kind the pages send), at most
    MAX_FORM_BYTES of it; anything else reads as no fields, so the CSRF check refuses it."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return {}
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM_BYTES:
            return {}
    return dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))


def _int(text: str | None) -> int:
    try:
        return int(text or 0)
    except ValueError:
        raise ActionRefused(f"{text!r} is not a whole number") from None

__all__ = ["TABS", "VERBS", "Settings", "create_app"]
