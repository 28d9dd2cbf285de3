"""Worker processes for the queue tests: the real ``purpose-agent worker`` command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

FLOWS = str(Path(__file__).with_name("queue_flows.py"))
SCRIPT = (shutil.which("purpose-agent", path=os.path.dirname(sys.executable))
          or shutil.which("purpose-agent"))


class WorkerProcess:
    """``purpose-agent worker`` in a subprocess. Unless ``wait=False`` the constructor
    returns once the worker says it serves (:meth:`started` waits for that later)."""

    def __init__(self, url: str, effects: Path, *flows: str, lease: float = 1.5,
                 concurrency: int = 1, poll: float = 0.05, log: Path | None = None,
                 wait: bool = True, takeover_limit: int = 5) -> None:
        assert SCRIPT, "the purpose-agent script is not installed: pip install -e '.[cli]'"
        args = [SCRIPT, "worker", "--db", url, "--lease", str(lease), "--poll", str(poll),
                "--concurrency", str(concurrency), "--takeover-limit", str(takeover_limit)]
        for flow in flows or ("effects",):
            args += ["--flow", f"{FLOWS}:{flow}"]
        env = {**os.environ, "QUEUE_EFFECTS": str(effects)}
        self.stderr = open(log or os.devnull, "ab")
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                     stderr=self.stderr, text=True)
        self.id = ""
        self.banner = ""
        self.ready = threading.Event()  # set once the banner line came (or stdout closed)
        threading.Thread(target=self._read_banner, daemon=True).start()
        if wait:
            self.started()

    def _read_banner(self) -> None:
        assert self.proc.stdout is not None
        self.banner = self.proc.stdout.readline()  # blocks until it serves (or dies)
        self.ready.set()

    def started(self) -> None:
        """Return once the worker serves (its banner line: its signal handlers are set)."""
        self.ready.wait(60)
        assert "serving flows" in self.banner, f"worker did not start: {self.banner!r}"
        self.id = self.banner.split()[1]

    @property
    def pid(self) -> int:
        return self.proc.pid

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.wait()

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float = 60) -> str:
        """Wait for the exit; the rest of stdout."""
        self.ready.wait(timeout)  # the banner reader is done with stdout
        out, _ = self.proc.communicate(timeout=timeout)
        self.stderr.close()
        return out
