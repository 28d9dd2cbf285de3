"""One answer to "is this lease live": the store refusing a second owner, the command
line calling a run stalled and `show` describing its lease all ask :func:`lease_status`."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from purpose_agent.cli.render import lease_text, stalled
from purpose_agent.errors import RunBusyError
from purpose_agent.runtime.journal import RunInfo, owner_id
from purpose_agent.runtime.owners import check_lease_free, lease_status
from purpose_agent.runtime.state import RunStatus

NOW = 1_000_000.0
ELSEWHERE = "other-host.example:4242"  # a live process on another machine, as far as we know


def _dead_owner() -> str:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    return f"{owner_id().rpartition(':')[0]}:{int(proc.stdout)}"


CASES = {
    "free": (None, None, "free"),
    "owner without expiry": (ELSEWHERE, None, "free"),
    "expired": (ELSEWHERE, NOW - 1, "expired"),
    "expiring this instant": (ELSEWHERE, NOW, "expired"),
    "live elsewhere": (ELSEWHERE, NOW + 30, "live"),
    "this process": (owner_id(), NOW + 30, "live"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_the_store_the_listing_and_show_agree_on_whether_a_lease_is_live(case):
    owner, expires, expected = CASES[case]
    assert lease_status(owner, expires, NOW) == expected
    try:
        check_lease_free("r1", owner, expires, NOW, "someone-else.example:1")
        refused = False
    except RunBusyError:
        refused = True
    assert refused == (expected == "live")
    info = RunInfo("r1", RunStatus.RUNNING, None, "", "a", 1, NOW, NOW, owner=owner,
                   lease_expires_at=expires)
    if expires is not None and expires > time.time():  # render judges by the clock now
        assert stalled(info) == (expected != "live")
        assert ("(live" in lease_text(owner, expires)) == (expected == "live")


def test_a_dead_owner_on_this_host_is_gone_before_its_lease_expires():
    dead = _dead_owner()
    far = time.time() + 3600
    assert lease_status(dead, far, time.time()) == "gone"
    check_lease_free("r1", dead, far, time.time(), "someone-else.example:1")  # no error
    assert "gone" in lease_text(dead, far)
    assert stalled(RunInfo("r1", RunStatus.RUNNING, None, "", "a", 1, 0, 0, owner=dead,
                           lease_expires_at=far))


def test_an_owner_without_an_expiry_is_not_shown_as_live():
    # The store grants every lease an expiry and clears both on release; a lease without
    # one is taken by the next acquirer, so `show` must not call it live.
    assert lease_text(ELSEWHERE, None) == "none"
    assert stalled(RunInfo("r1", RunStatus.RUNNING, None, "", "a", 1, 0, 0, owner=ELSEWHERE))
