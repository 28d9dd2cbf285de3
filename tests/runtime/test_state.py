"""RunState's header: the small part of a run rewritten on every commit."""

from __future__ import annotations

from purpose_agent.runtime.state import HEADER_FIELDS, RunState, RunStatus


def test_the_header_holds_every_header_field_in_order_and_nothing_else():
    state = RunState(run_id="r1", session_id="s", status=RunStatus.PAUSED, purpose="p",
                     flow="f", flow_ref="m:f", current_node="n", current_step=3, max_steps=9,
                     pending={"kind": "interrupt"}, error={"type": "E"}, parent={"run_id": "r0"},
                     data={"not": "in the header"})
    header = state.header()
    assert tuple(header) == HEADER_FIELDS
    expected = {name: getattr(state, name) for name in HEADER_FIELDS}
    assert header == {**expected, "status": "paused"}
    assert type(header["status"]) is str
    again = RunState(run_id="r1")
    again.apply_header(header)
    assert again.header() == header
