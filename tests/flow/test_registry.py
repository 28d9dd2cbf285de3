"""FlowRegistry: a run's recorded flow selects among the flows a process was given, and
matching it runs no code (the CLI's end-to-end stories are in tests/cli/test_cli_flow_trust.py)."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path

import pytest

from purpose_agent import END, Flow
from purpose_agent.errors import FlowChangedError, FlowImportError, FlowNotAllowed
from purpose_agent.flow.registry import (
    ENV_VAR,
    FlowRef,
    FlowRegistry,
    RecordedFlow,
    declared_refs,
)

FLOW_MODULE = """
from pathlib import Path
Path({marker!r}).write_text("imported", encoding="utf-8")
from purpose_agent import END, Flow
flow = Flow("pkgflow")
flow.add(lambda ctx: None, name="a")
flow.edge("a", END)
"""


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A package whose __init__ and flow module both leave a marker when imported."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    name = f"trustpkg_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "marker"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).write_text('init', "
        "encoding='utf-8')\n", encoding="utf-8")
    (tmp_path / name / "flows.py").write_text(FLOW_MODULE.format(marker=str(marker)),
                                              encoding="utf-8")
    yield name, marker
    for module in [m for m in sys.modules if m == name or m.startswith(f"{name}.")]:
        del sys.modules[module]


def test_matching_a_run_to_the_given_flows_runs_no_code(package, tmp_path) -> None:
    name, marker = package
    path_before = list(sys.path)
    given = FlowRef.parse(f"{name}.flows:flow", source="test", base=tmp_path)
    registry = FlowRegistry([given])
    file = tmp_path / name / "flows.py"
    assert given.keys() == {f"{name}.flows:flow", f"{file.resolve()}:flow"}
    # Selected by its module reference, or by the file a script run recorded.
    assert registry.find(RecordedFlow("pkgflow", f"{name}.flows:flow")) is given
    assert registry.find(RecordedFlow("pkgflow", f"{file}:flow")) is given
    assert registry.find(RecordedFlow("pkgflow", "other:flow", str(file))) is given
    with pytest.raises(FlowNotAllowed) as refused:
        registry.resolve(RecordedFlow("pkgflow", "/tmp/evil.py:flow"), run_id="r")
    assert refused.value.run_id == "r" and refused.value.allowed == (f"{name}.flows:flow (test)",)
    assert "run 'r' records flow /tmp/evil.py:flow (named 'pkgflow')" in str(refused.value)
    assert "so nothing was imported or run" in str(refused.value)
    assert not marker.exists() and sys.path == path_before

    flow = registry.resolve(RecordedFlow("pkgflow", f"{name}.flows:flow"), run_id="r")
    assert flow.name == "pkgflow" and marker.exists()
    assert sys.path[0] == str(tmp_path)  # the directory the reference was given in


def test_a_loaded_flow_must_have_the_recorded_name(package, tmp_path) -> None:
    name, _ = package
    registry = FlowRegistry([FlowRef.parse(f"{name}.flows:flow", source="test",
                                           base=tmp_path)])
    with pytest.raises(FlowChangedError, match="run 'r' was started by flow 'payroll', "
                                               "not 'pkgflow'"):
        registry.resolve(RecordedFlow("payroll", f"{name}.flows:flow"), run_id="r")


def test_flows_given_as_objects_are_selected_by_the_recorded_name() -> None:
    def make(name: str) -> Flow:
        flow = Flow(name)
        flow.add(lambda ctx: None, name="a")
        flow.edge("a", END)
        return flow

    first, second = make("first"), make("second")
    registry = FlowRegistry(flows=[first, second])
    assert registry.resolve(RecordedFlow("second", "/tmp/evil.py:flow"), run_id="r") is second
    with pytest.raises(FlowNotAllowed, match="flow 'first'; flow 'second'"):
        registry.resolve(RecordedFlow("third", "third:flow"), run_id="r")


def test_the_declared_flows_come_from_the_working_directory_and_the_environment(
        tmp_path) -> None:
    project = tmp_path / "proj"
    (project / "sub").mkdir(parents=True)
    (tmp_path / "pyproject.toml").write_text(  # a parent's file declares nothing
        '[tool.purpose-agent]\nflows = ["parent:flow"]\n', encoding="utf-8")
    (project / "pyproject.toml").write_text(
        '[tool.purpose-agent]\nflows = ["app.flows:flow", "sub/run.py:flow"]\n',
        encoding="utf-8")
    refs = declared_refs(project, {ENV_VAR: " x.y:flow , ,/abs/f.py:flow"})
    assert [(r.text, r.source) for r in refs] == [
        ("app.flows:flow", str(project / "pyproject.toml")),
        ("sub/run.py:flow", str(project / "pyproject.toml")),
        ("x.y:flow", f"${ENV_VAR}"), ("/abs/f.py:flow", f"${ENV_VAR}")]
    assert refs[0].base == project.resolve() and refs[0].module == "app.flows"
    assert refs[1].path == (project / "sub" / "run.py").resolve()
    assert declared_refs(project / "sub", {}) == []
    with pytest.raises(FlowImportError, match="must look like"):
        declared_refs(project / "sub", {ENV_VAR: "a-b:flow"})


def test_a_forged_record_matches_nothing_and_breaks_nothing(tmp_path) -> None:
    class Forged:
        flow, flow_ref, flow_file = ["x"], 42, {"a": 1}

    assert RecordedFlow.of(Forged()) == RecordedFlow(None, None, None)
    registry = FlowRegistry([FlowRef.parse("json:loads", source="test")])
    for ref, file in (("/tmp/a\x00b.py:flow", None), ("mod:flow", "/tmp/a\x00b.py"),
                      ("mod:not an attr", None), (":flow", None), ("nothing", None)):
        recorded = RecordedFlow("x", ref, file)
        assert registry.find(recorded) is None
        with pytest.raises(FlowNotAllowed):
            registry.resolve(recorded, run_id="r")
    loop = tmp_path / "loop.py"
    loop.symlink_to(loop)
    assert registry.find(RecordedFlow("x", f"{loop}:flow")) is None
