"""The core stays free of OpenTelemetry: without telemetry nothing of it is imported, and
asking for telemetry without the extra installed is a clear error before any run starts."""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import purpose_agent

CODE = textwrap.dedent("""
    import sys
    if sys.argv[1] == "absent":
        sys.modules["opentelemetry"] = None  # as if the otel extra were not installed
    from purpose_agent import END, Flow, InMemoryCheckpointer
    from purpose_agent.errors import FlowDefinitionError
    flow = Flow("plain", telemetry=None if sys.argv[2] == "env" else sys.argv[2] == "on")
    flow.add(lambda ctx: {"x": 1}, name="only")
    flow.edge("only", END)
    cp = InMemoryCheckpointer()
    try:
        print(flow.run({}, checkpointer=cp, run_id="r").status)
    except FlowDefinitionError as exc:
        print("refused:", exc, "| runs:", cp.list_runs())
    print("otel imported:", any(m.startswith("opentelemetry") and sys.modules[m] is not None
                                for m in sys.modules))
""")


def _run(*args: str, otel_env: str = "") -> list[str]:
    env = {"PATH": "/usr/bin:/bin", "PURPOSE_AGENT_OTEL": otel_env}
    out = subprocess.run([sys.executable, "-c", CODE, *args], capture_output=True, text=True,
                         env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()


def test_no_opentelemetry_import_without_telemetry() -> None:
    assert _run("present", "off") == ["completed", "otel imported: False"]
    assert _run("present", "env") == ["completed", "otel imported: False"]


def test_telemetry_without_the_extra_is_refused_before_the_run() -> None:
    for args, env in ((("absent", "on"), ""), (("absent", "env"), "1")):
        refused, imported = _run(*args, otel_env=env)
        assert refused.startswith("refused:") and "pip install 'purpose-agent[otel]'" in refused
        assert refused.endswith("| runs: []")  # nothing was started
        assert imported == "otel imported: False"


def _names_of_integrations(path: Path) -> list[str]:
    """Where ``path`` imports, or names in a call (``importlib.import_module(...)``,
    ``find_spec(...)``), the telemetry package or OpenTelemetry."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call) and not (
                isinstance(node.func, ast.Attribute) and node.func.attr == "getLogger"):
            names = [arg.value for arg in node.args
                     if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
        found += [f"{path.name}:{node.lineno}: {name}" for name in names
                  if name.startswith(("purpose_agent.telemetry", "opentelemetry"))]
    return found


def test_the_core_knows_no_telemetry_package() -> None:
    """flow/ and runtime/ only call the hook (flow/observe.py) the package registers;
    what answers it, and imports OpenTelemetry when asked, lives outside the core."""
    root = Path(purpose_agent.__file__).parent
    core = [*root.joinpath("flow").rglob("*.py"), *root.joinpath("runtime").rglob("*.py")]
    assert len(core) > 40
    assert [hit for path in core for hit in _names_of_integrations(path)] == []
