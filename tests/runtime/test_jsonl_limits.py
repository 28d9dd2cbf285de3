"""The JSONL store at the edges of the machine: a full disk, a file size limit, a damaged
lease file. Each is a clear StoreError saying what happened and what to do, and every
commit before it stays readable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap

import pytest

from purpose_agent.errors import StoreCorrupted
from purpose_agent.runtime.checkpoint import JSONLCheckpointer
from purpose_agent.runtime.events import EventKind, create_event
from purpose_agent.runtime.journal import Commit
from purpose_agent.runtime.state import RunState

# The child writes one small event, then one too big for the room left (a payload of
# argv[2] bytes), and reports what the store said and what it reads back afterwards.
CHILD = """
import json, resource, signal, sys
from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import JSONLCheckpointer
from purpose_agent.runtime.events import EventKind, create_event

store = JSONLCheckpointer(sys.argv[1])
store.save_event(create_event("r1", EventKind.NODE_PROGRESS, n=0))
journal = store.dir / "r1.jsonl"
size = journal.stat().st_size
if sys.argv[3] == "rlimit":
    # Past the limit the kernel sends SIGXFSZ (which kills by default) and write() fails
    # with EFBIG; a write that crosses it is cut short first.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (size + 100, hard))
error = None
try:
    store.save_event(create_event("r1", EventKind.NODE_PROGRESS, text="x" * int(sys.argv[2])))
except StoreError as exc:
    error = str(exc)
after = journal.stat().st_size
if sys.argv[3] == "rlimit":
    resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the limit is raised
fresh = JSONLCheckpointer(sys.argv[1])
seqs = [e.seq for e in fresh.list_events("r1")]
again = fresh.save_event(create_event("r1", EventKind.NODE_PROGRESS, n=1)).seq
print(json.dumps({"error": error, "size": size, "after": after, "seqs": seqs,
                  "again": again}))
"""


def _report(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_a_file_size_limit_mid_append_is_a_clear_error_and_earlier_commits_stay(tmp_path):
    """RLIMIT_FSIZE gives real short writes and EFBIG, in a child process of its own."""
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(CHILD),
                             str(tmp_path / "store"), "5000", "rlimit"],
                            capture_output=True, text=True, timeout=60)
    report = _report(result)
    assert report["error"] is not None, "the write that did not fit failed"
    assert "the file would exceed the largest size allowed" in report["error"]
    assert "ulimit -f" in report["error"] and "earlier commits are intact" in report["error"]
    assert report["after"] == report["size"], "the part that was written is cut off again"
    assert report["seqs"] == [1] and report["again"] == 2


def _mount_namespace() -> list[str] | None:
    """A command prefix that runs its command in a mount namespace of its own, where it
    may mount a tmpfs (as root, or through a user namespace), or None if neither works."""
    if shutil.which("unshare") is None:
        return None
    for prefix in (["unshare", "--mount"], ["unshare", "--user", "--map-root-user", "--mount"]):
        probe = subprocess.run([*prefix, "sh", "-c", "mount -t tmpfs -o size=4k tmpfs /mnt"],
                               capture_output=True, text=True)
        if probe.returncode == 0:
            return prefix
    return None


def test_a_full_disk_says_the_disk_is_full_and_earlier_commits_stay(tmp_path):
    """A real full file system: a 64 KiB tmpfs, mounted in a mount namespace of the child
    (so nothing is left mounted whatever happens to the test)."""
    prefix = _mount_namespace()
    if prefix is None:
        pytest.skip("cannot mount a tmpfs here (needs root or user namespaces); "
                    "the file size limit test covers short writes")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    result = subprocess.run(
        [*prefix, "sh", "-c", 'mount -t tmpfs -o size=64k tmpfs "$1" && shift && exec "$@"',
         "sh", str(disk), sys.executable, str(script), str(disk / "store"), "200000", "-"],
        capture_output=True, text=True, timeout=60)
    report = _report(result)
    assert report["error"] is not None and "the disk is full" in report["error"], report
    assert "free space and retry" in report["error"]
    assert report["after"] == report["size"] and report["seqs"] == [1]
    assert report["again"] == 2, "once the failed line is cut off, there is room again"


def test_a_damaged_lease_file_is_a_store_error_saying_what_to_do(tmp_path):
    store = JSONLCheckpointer(tmp_path / "store")
    state = RunState(run_id="r1")
    store.commit("r1", Commit(state=state, snapshot=True, create=True))
    lease_file = store.dir / "r1.lease.json"
    for damage in (b"\x00garbage", b"[]", b'{"owner": null}', b'{"fence": "1", "owner": null}'):
        lease_file.write_bytes(damage)
        for attempt in (lambda: store.acquire_lease("r1", "me:1", 30),
                        lambda: store.run_info("r1"),
                        lambda: store.commit("r1", Commit(acquire=("me:1", 30.0)))):
            with pytest.raises(StoreCorrupted, match="lease file of run 'r1' is damaged") as caught:
                attempt()
            assert str(lease_file) in str(caught.value)
            assert "delete this file and retry" in str(caught.value)
        assert lease_file.read_bytes() == damage
    lease_file.unlink()
    assert store.acquire_lease("r1", "me:1", 30).fence == 1
    assert [e.seq for e in store.list_events("r1")] == []
    assert store.load_latest("r1") is not None
    events = [create_event("r1", EventKind.NODE_PROGRESS)]
    assert store.commit("r1", Commit(events=events)).events[0].seq == 1


SNAPSHOT_CHILD = """
import json, os, resource, signal, sys
from purpose_agent.errors import StoreError
from purpose_agent.runtime.checkpoint import JSONLCheckpointer
from purpose_agent.runtime.state import RunState

store = JSONLCheckpointer(sys.argv[1])
store.save_snapshot("r1", RunState(run_id="r1", data={"n": 0}))
journal = (store.dir / "r1.jsonl").read_bytes()
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
resource.setrlimit(resource.RLIMIT_FSIZE, (len(journal) + 4096, hard))
error = None
try:  # the snapshot file crosses the limit part way: a short write, then EFBIG
    store.save_snapshot("r1", RunState(run_id="r1", data={"n": 1, "pad": "x" * 20000}))
except StoreError as exc:
    error = str(exc)
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))
print(json.dumps({"error": error, "same": (store.dir / "r1.jsonl").read_bytes() == journal,
                  "files": sorted(os.listdir(store.dir / "r1.snapshots")),
                  "data": JSONLCheckpointer(sys.argv[1]).load_latest("r1").data}))
"""


def test_a_snapshot_cut_short_is_a_clear_error_and_leaves_no_file_behind(tmp_path):
    result = subprocess.run([sys.executable, "-c", textwrap.dedent(SNAPSHOT_CHILD),
                             str(tmp_path / "store")], capture_output=True, text=True,
                            timeout=60)
    report = _report(result)
    assert report["error"] is not None and "largest size allowed" in report["error"], report
    assert report["same"], "no journal line for a snapshot that was not written"
    assert report["files"] == ["000000000001.json"], "no temp file, no partial snapshot"
    assert report["data"] == {"n": 0}
