"""Headless Chromium (the Debian ``chromium`` package), driven over the DevTools protocol
on a pipe (``--remote-debugging-pipe``: JSON messages ending in NUL, commands in on fd
3, answers out on fd 4), so no driver, websocket library or browser download is needed.
"""

from __future__ import annotations

import base64
import fcntl
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run", "--remote-debugging-pipe",
         "--window-size=1280,900")


class BrowserError(Exception):
    pass


class Browser:
    """One headless Chromium with one page. ``dialogs`` collects every JavaScript dialog
    the page tried to open (an injected ``alert`` would land here)."""

    def __init__(self, executable: str, profile: Path, *extra: str, timeout: float = 30.0) -> None:
        self.timeout = timeout
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()
        # Above any descriptor the shell's redirections below could overwrite.
        inp = fcntl.fcntl(to_browser_r, fcntl.F_DUPFD, 100)
        out = fcntl.fcntl(from_browser_w, fcntl.F_DUPFD, 100)
        os.close(to_browser_r)
        os.close(from_browser_w)
        script = f'exec "$0" "$@" 3<&{inp} 4>&{out} {inp}<&- {out}>&-'
        self.process = subprocess.Popen(
            ["bash", "-c", script, executable, *FLAGS, f"--user-data-dir={profile}", *extra,
             "about:blank"], pass_fds=(inp, out), stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(inp)
        os.close(out)
        self._out = to_browser_w
        self._in = from_browser_r
        self._next_id = 0
        self._answers: dict[int, dict[str, Any]] = {}
        self._events: list[dict[str, Any]] = []
        self._changed = threading.Condition()
        self._closed = False
        self._reader = threading.Thread(target=self._read, name="chromium-reader", daemon=True)
        self._reader.start()
        self.dialogs: list[str] = []
        target = self.call("Target.createTarget", url="about:blank")["targetId"]
        self.session = self.call("Target.attachToTarget", targetId=target,
                                 flatten=True)["sessionId"]
        self.call("Page.enable", session=True)
        self.call("Runtime.enable", session=True)

    # ── the protocol ──────────────────────────────────────────────────────────────
    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._in, 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if message.get("method") == "Page.javascriptDialogOpening":
                    self.dialogs.append(message["params"].get("message", ""))
                    threading.Thread(target=self._dismiss, daemon=True).start()
                with self._changed:
                    if "id" in message:
                        self._answers[message["id"]] = message
                    else:
                        self._events.append(message)
                    self._changed.notify_all()
        with self._changed:
            self._closed = True
            self._changed.notify_all()

    def _dismiss(self) -> None:
        self.call("Page.handleJavaScriptDialog", session=True, accept=False)

    def call(self, method: str, *, session: bool = False, **params: Any) -> dict[str, Any]:
        """Send one command and wait for its answer."""
        with self._changed:
            self._next_id += 1
            number = self._next_id
        message: dict[str, Any] = {"id": number, "method": method, "params": params}
        if session:
            message["sessionId"] = self.session
        os.write(self._out, json.dumps(message).encode() + b"\0")
        with self._changed:
            if not self._changed.wait_for(lambda: number in self._answers or self._closed,
                                          self.timeout):
                raise BrowserError(f"no answer to {method} in {self.timeout}s")
            if self._closed and number not in self._answers:
                raise BrowserError("chromium exited")
            answer = self._answers.pop(number)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        return dict(answer.get("result", {}))

    def _wait_event(self, method: str, after: int) -> None:
        def seen() -> bool:
            return any(e.get("method") == method and e.get("sessionId") == self.session
                       for e in self._events[after:])
        with self._changed:
            if not self._changed.wait_for(lambda: seen() or self._closed, self.timeout):
                raise BrowserError(f"no {method} in {self.timeout}s")

    def _mark(self) -> int:
        with self._changed:
            return len(self._events)

    # ── what tests do ─────────────────────────────────────────────────────────────
    def open(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        mark = self._mark()
        self.call("Page.navigate", session=True, url=url)
        self._wait_event("Page.loadEventFired", mark)

    def js(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (promises awaited)."""
        result = self.call("Runtime.evaluate", session=True, expression=expression,
                           awaitPromise=True, returnByValue=True)
        if "exceptionDetails" in result:
            raise BrowserError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def click_and_load(self, selector: str) -> None:
        """Click what ``selector`` finds (a link, a submit button) and wait for the page it
        leads to."""
        mark = self._mark()
        clicked = self.js(f"(() => {{ const el = document.querySelector({json.dumps(selector)});"
                          " if (!el) return false; el.click(); return true; })()")
        if not clicked:
            raise BrowserError(f"nothing matches {selector}")
        self._wait_event("Page.loadEventFired", mark)

    def wait_for(self, condition: str, timeout_ms: int = 20000) -> None:
        """Wait until a JavaScript ``condition`` holds in the page: checked at once, then on
        every change of the document (a MutationObserver) and after a reload."""
        waiter = (
            "new Promise((resolve, reject) => {"
            f" const ok = () => {{ try {{ return !!({condition}); }} catch (e) {{ return false; }} }};"
            " if (ok()) { resolve(true); return; }"
            " const seen = new MutationObserver(() => { if (ok()) { seen.disconnect(); resolve(true); } });"
            " seen.observe(document, {subtree: true, childList: true, characterData: true, attributes: true});"
            f" setTimeout(() => reject(new Error('still not: ' + {json.dumps(condition)})), {timeout_ms});"
            "})")
        for _ in range(5):
            mark = self._mark()
            try:
                self.js(waiter)
                return
            except BrowserError as exc:
                if "context was destroyed" not in str(exc) and "navigat" not in str(exc):
                    raise
                self._wait_event("Page.loadEventFired", mark)  # the page reloaded itself
        raise BrowserError(f"the page kept reloading while waiting for {condition}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", session=True, format="png",
                         captureBeyondViewport=True)["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.call("Browser.close")
        except BrowserError:
            pass
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self._out)
        self._reader.join(10)
        os.close(self._in)
