"""The inspector in a real browser: headless Chromium from the Debian package.

Skipped, with the reason, where chromium is not installed; under CI (``CI=true``) its
absence fails the run, since .ci/run installs it.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from ui_browser import Browser
from ui_flows import ENTERED, GATE, XSS, agent_flow, approval, gated
from ui_server import StartInspector

from purpose_agent.runtime.state import RunStatus


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Browser]:
    executable = shutil.which("chromium")
    if executable is None:
        reason = "no chromium (apt-get install chromium)"
        if os.environ.get("CI", "").lower() in ("true", "1", "yes"):
            pytest.fail(f"CI must run the browser tests, but there is {reason}", pytrace=False)
        pytest.skip(reason)
    # Any name resolves to this machine, as a DNS-rebinding attacker's name would.
    chromium = Browser(executable, tmp_path / "profile",
                       "--host-resolver-rules=MAP evil.example 127.0.0.1")
    yield chromium
    chromium.close()


def _paused(ui, run_id: str) -> None:  # type: ignore[no-untyped-def]
    assert approval.run({}, checkpointer=ui.cp, run_id=run_id).status is RunStatus.PAUSED


def test_click_a_paused_run_approve_it_and_see_it_complete(
        browser: Browser, start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "b-1")
    browser.open(f"{ui.base}/runs")
    assert browser.js("document.querySelector('tr[data-run=\"b-1\"] .status').textContent") \
        == "paused"
    browser.click_and_load('tr[data-run="b-1"] a.run-link')
    assert browser.js("location.pathname") == "/runs/b-1"
    assert "Send this reply?" in browser.js("document.querySelector('#ask').innerText")
    browser.click_and_load("#ask button.approve")
    browser.wait_for("document.querySelector('#run-status').textContent === 'completed'")
    state = ui.cp.load_latest("b-1")
    assert state is not None and state.status is RunStatus.COMPLETED
    assert state.data["outcome"] == "sent"
    assert browser.dialogs == []


def test_approve_from_the_inbox_and_see_the_inbox_follow(
        browser: Browser, start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "i-1")
    _paused(ui, "i-2")
    browser.open(f"{ui.base}/inbox")
    assert browser.js("document.querySelectorAll('article.ask').length") == 2
    browser.click_and_load('article[data-run="i-1"] button.approve')
    ui.finished("i-1")
    state = ui.cp.load_latest("i-1")
    assert state is not None and state.status is RunStatus.COMPLETED
    browser.wait_for("!document.querySelector('article[data-run=\"i-1\"]')")
    browser.js("window.__same_page = true")
    # answered elsewhere (the command line, another person): the open inbox follows
    assert approval.resume("i-2", checkpointer=ui.cp, answer="yes").status \
        is RunStatus.COMPLETED
    browser.wait_for("document.querySelector('#inbox-empty') !== null")
    assert browser.js("window.__same_page") is True
    assert browser.dialogs == []


def test_the_runs_list_follows_a_running_run_without_reloading(
        browser: Browser, start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(gated,))
    GATE.clear()
    ENTERED.clear()
    worker = threading.Thread(target=gated.run, args=({},),
                              kwargs={"checkpointer": ui.cp, "run_id": "live-1"})
    worker.start()
    try:
        assert ENTERED.wait(30)
        browser.open(f"{ui.base}/runs")
        assert browser.js("document.querySelector('tr[data-run=\"live-1\"] .status')"
                          ".textContent") == "running"
        browser.js("window.__same_page = true")
    finally:
        GATE.set()
        worker.join(30)
    browser.wait_for("document.querySelector('tr[data-run=\"live-1\"] .status').textContent"
                     " === 'completed'")
    assert browser.js("window.__same_page") is True  # swapped in place, not reloaded
    # pushed by the server over one EventSource stream, not fetched again and again
    assert browser.js("document.documentElement.getAttribute('data-live')") == "sse"
    fetched = browser.js("performance.getEntriesByType('resource').map(e => e.name)"
                         ".filter(n => n.includes('fragment='))")
    assert all("stream=1" in url for url in fetched), fetched


def test_fork_at_a_step_with_an_edited_value(browser: Browser,
                                             start_inspector: StartInspector,
                                             db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "b-2")
    browser.open(f"{ui.base}/runs/b-2?tab=state&step=1")
    browser.js("document.querySelector('#fork-form textarea[name=update]').value ="
               " '{\"draft\": \"Edited in the browser\"}';"
               " document.querySelector('#fork-form input[name=new_id]').value = 'b-2-fork'")
    browser.click_and_load("#fork")
    assert browser.js("location.pathname") == "/runs/b-2-fork"
    assert "forked from" in browser.js("document.querySelector('.facts').innerText")
    forked = ui.cp.load_latest("b-2-fork")
    assert forked is not None and forked.data["draft"] == "Edited in the browser"
    assert forked.status is RunStatus.PENDING


def test_markup_in_a_run_is_shown_as_text_and_never_runs(
        browser: Browser, start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "x-1")
    agent_flow(XSS).run({"input": XSS}, checkpointer=ui.cp, run_id="x-2")
    pages = ["/runs", "/inbox"] + [f"/runs/{r}?tab={t}" for r in ("x-1", "x-2")
                                   for t in ("timeline", "transcript", "state", "events")]
    for path in pages:
        browser.open(ui.base + path)
        assert browser.js("window.__xss === undefined"), path
        assert browser.js("document.querySelectorAll('img[src=\"x\"]').length") == 0, path
    browser.open(f"{ui.base}/runs/x-2?tab=transcript")
    assert '<script>window.__xss = 1; alert("x")</script>' in browser.js(
        "document.querySelector('#transcript').innerText")
    assert browser.dialogs == []


def test_the_browser_is_refused_without_csrf_and_under_a_foreign_name(
        browser: Browser, start_inspector: StartInspector, db_url: str) -> None:
    ui = start_inspector(db_url, flows=(approval,))
    _paused(ui, "b-3")
    browser.open(f"{ui.base}/runs/b-3")
    status = browser.js("fetch('/runs/b-3/approve', {method: 'POST', body: new "
                        "URLSearchParams({next: '/runs'})}).then(r => r.status)")
    assert status == 403
    port = ui.base.rsplit(":", 1)[1]
    browser.open(f"http://evil.example:{port}/runs")
    assert "the Host header does not name this server" in browser.js("document.body.innerText")
    assert "b-3" not in browser.js("document.body.innerText")
    assert ui.cp.load_latest("b-3").status is RunStatus.PAUSED  # type: ignore[union-attr]
