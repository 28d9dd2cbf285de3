"""The rules that keep the page from being steered by anyone but the person at it."""

from __future__ import annotations

import pytest
from ui_flows import approval
from ui_server import StartInspector

from purpose_agent.runtime.state import RunStatus
from purpose_agent.ui.security import Guard, UnsafeBind, check_bind


def _paused(ui, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert approval.run({}, checkpointer=ui.cp, run_id=run_id).status is RunStatus.PAUSED


def test_a_post_without_a_valid_csrf_token_changes_nothing(
        start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "c-1")
    ui.get("/runs")  # a session cookie, as a browser would have
    for token in ("", "0" * 64):
        refused = ui.post("/runs/c-1/approve", csrf=token)
        assert refused.status_code == 403 and "CSRF" in refused.text
    # another browser session's token is not this one's
    theirs = ui.csrf()
    ui.client.cookies.clear()
    ui.get("/runs")  # a new session
    assert ui.post("/runs/c-1/approve", csrf=theirs).status_code == 403
    # a form from another site: JSON body, or no body at all
    assert ui.client.post("/runs/c-1/approve", json={"csrf": ui.csrf()}).status_code == 403
    assert ui.cp.load_latest("c-1").status is RunStatus.PAUSED  # type: ignore[union-attr]
    assert "c-1" not in ui.actions.activity


def test_get_never_changes_anything(start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "g-1")
    for verb in ("approve", "cancel", "delete"):
        assert ui.get(f"/runs/g-1/{verb}").status_code == 405
    assert ui.cp.load_latest("g-1").status is RunStatus.PAUSED  # type: ignore[union-attr]


def test_a_foreign_host_header_is_refused(start_inspector: StartInspector, db_url: str) -> None:
    """DNS rebinding: a hostile name pointed at 127.0.0.1 reaches the port, with its own
    name in Host."""
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "h-1")
    port = ui.base.rsplit(":", 1)[1]
    for host in (f"evil.example:{port}", "evil.example", f"127.0.0.1:{int(port) + 1}"):
        refused = ui.get("/runs", headers={"Host": host})
        assert refused.status_code == 421, host
        assert "h-1" not in refused.text
    token = ui.csrf()
    posted = ui.client.post("/runs/h-1/approve", data={"csrf": token},
                            headers={"Host": f"evil.example:{port}"})
    assert posted.status_code == 421
    assert ui.cp.load_latest("h-1").status is RunStatus.PAUSED  # type: ignore[union-attr]
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"[::1]:{port}"):
        assert ui.get("/runs", headers={"Host": host}).status_code == 200, host


def test_no_cors_and_a_strict_content_security_policy(start_inspector: StartInspector,
                                                      db_url: str) -> None:
    ui = start_inspector(db_url)
    response = ui.get("/runs", headers={"Origin": "http://evil.example"})
    assert not any(h.lower().startswith("access-control-") for h in response.headers)
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    preflight = ui.client.options("/runs/x/approve",
                                  headers={"Origin": "http://evil.example",
                                           "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in preflight.headers


def test_binding_beyond_loopback_needs_a_token() -> None:
    with pytest.raises(UnsafeBind, match="--token"):
        check_bind("0.0.0.0", None)
    with pytest.raises(UnsafeBind):
        check_bind("192.168.1.20", "")
    with pytest.raises(UnsafeBind):
        Guard("::", 8765)
    check_bind("127.0.0.1", None)
    check_bind("::1", None)
    check_bind("localhost", None)
    check_bind("0.0.0.0", "s3cret")
    wide = Guard("0.0.0.0", 8765, "s3cret")
    assert wide.host_allowed("10.1.2.3:8765") and not wide.host_allowed("evil.example:8765")
    assert not wide.host_allowed("10.1.2.3:8766")


def test_with_a_token_every_request_needs_it(start_inspector: StartInspector,
                                             db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,), token="s3cret token/+")
    _paused(ui, "t-1")
    denied = ui.get("/runs")
    assert denied.status_code == 401 and "t-1" not in denied.text
    assert ui.get("/static/app.js").status_code == 401
    assert ui.get("/runs", params={"token": "wrong"}).status_code == 401
    assert ui.get("/runs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert ui.get("/runs", headers={"Authorization": "Bearer s3cret token/+"}).status_code == 200
    # opened once with ?token=: a cookie remembers it and the address bar loses it
    opened = ui.get("/runs", params={"token": "s3cret token/+", "status": "paused"})
    assert opened.status_code == 303 and opened.headers["location"] == "/runs?status=paused"
    assert "s3cret" not in opened.headers["set-cookie"]
    page = ui.get("/runs?status=paused")
    assert page.status_code == 200 and 'data-run="t-1"' in page.text
    assert ui.post("/runs/t-1/approve").status_code == 303
    ui.finished("t-1")
    ui.client.cookies.clear()
    assert ui.post("/runs/t-1/cancel", csrf="x").status_code == 401


def test_read_only_offers_and_allows_no_action(start_inspector: StartInspector,
                                               db_url: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from purpose_agent import SQLiteCheckpointer
    with SQLiteCheckpointer(str(tmp_path / "runs.db")) as cp:
        assert approval.run({}, checkpointer=cp, run_id="ro-1").status is RunStatus.PAUSED
    ui = start_inspector(db_url, flows=(approval,), read_only=True)
    for path in ("/inbox", "/runs/ro-1", "/runs/ro-1?tab=state"):
        body = ui.get(path).text
        assert 'method="post"' not in body, path
        assert "read-only" in body
    assert "Send this reply?" in ui.get("/inbox").text
    for verb in ("approve", "cancel", "delete", "fork"):
        refused = ui.post(f"/runs/ro-1/{verb}", {"confirm": "ro-1"})
        assert refused.status_code == 403 and "read-only" in refused.text
    assert ui.cp.load_latest("ro-1").status is RunStatus.PAUSED  # type: ignore[union-attr]
