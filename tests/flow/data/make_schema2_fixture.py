"""How ``schema2.db`` was written: by purpose-agent at commit 06a9a93 (SQLite schema 2).

    git worktree add /tmp/old 06a9a93
    PYTHONPATH=/tmp/old python make_schema2_fixture.py schema2.db /tmp/old/examples

Three runs of examples/approval_flow.py: "paused" (waits for approval), "done" (approved
and refunded), "crashed" (approved, then SIGKILLed after its refund step committed and
before its node did; its lease has long expired when a test opens the file).
"""

import importlib.util
import os
import signal
import sqlite3
import subprocess
import sys

from purpose_agent import SQLiteCheckpointer

out, examples = sys.argv[1], sys.argv[2]
spec = importlib.util.spec_from_file_location("approval_flow",
                                              os.path.join(examples, "approval_flow.py"))
assert spec is not None and spec.loader is not None
module = importlib.util.module_from_spec(spec)
spec.loader.exec_module(module)
flow = module.flow

if len(sys.argv) > 3:  # the child: approve "crashed", die in its refund node
    os.environ["CRASH"] = "1"
    flow.resume("crashed", checkpointer=SQLiteCheckpointer(out), answer=True)
    sys.exit("not reached")
cp = SQLiteCheckpointer(out)
flow.run({"order_id": "P-1"}, checkpointer=cp, run_id="paused")
flow.run({"order_id": "D-1"}, checkpointer=cp, run_id="done")
flow.resume("done", checkpointer=cp, answer=True)
flow.run({"order_id": "C-1"}, checkpointer=cp, run_id="crashed")
cp.close()
child = subprocess.run([sys.executable, __file__, out, examples, "child"], check=False)
assert child.returncode == -signal.SIGKILL, child.returncode
db = sqlite3.connect(out)
db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
db.execute("PRAGMA journal_mode = DELETE")
db.execute("VACUUM")
db.close()
