"""The core stays free of OpenTelemetry: without telemetry nothing of it is imported, and
asking for telemetry without the extra installed is a clear error before any run starts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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
