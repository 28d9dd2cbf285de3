"""Where ``fcntl`` does not exist (Windows), ``import purpose_agent`` and the SQLite and
in-memory stores still work: only the JSONL store locks files with it, and imports it
when it locks."""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = """
import sys
sys.modules["fcntl"] = None  # as on a platform without it: importing it fails
import purpose_agent
from purpose_agent import END, Flow, SQLiteCheckpointer
from purpose_agent.runtime.checkpoint import JSONLCheckpointer, open_checkpointer

flow = Flow("plain", purpose="runs without fcntl")

@flow.node
def only(ctx):
    return {"n": ctx.step("double", lambda x: 2 * x, 21)}

flow.edge("only", END)
cp = SQLiteCheckpointer(sys.argv[1])
print(flow.run({}, checkpointer=cp, run_id="r1").data["n"])
print(open_checkpointer("memory://").list_runs())
try:
    JSONLCheckpointer(sys.argv[2]).list_runs()
    JSONLCheckpointer(sys.argv[2]).save_snapshot("r1", cp.load_latest("r1"))
except Exception as exc:
    print("jsonl:", type(exc).__name__, exc)
"""


def test_purpose_agent_and_sqlite_work_without_fcntl(tmp_path):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD),
                             str(tmp_path / "runs.db"), str(tmp_path / "journals")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert out[:2] == ["42", "[]"]
    assert out[2].startswith("jsonl: StoreError") and "fcntl" in out[2] and "sqlite" in out[2]
