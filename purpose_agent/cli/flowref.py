"""Find a flow from a reference: ``package.module:attr`` or ``path/to/file.py:attr``.

A run records where its flow lives (``RunState.flow_ref``, computed by ``Flow.ref``), so
``purpose-agent resume`` can load the same code in another process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from pathlib import Path

from purpose_agent.errors import FlowImportError
from purpose_agent.flow import Flow


def load_flow(ref: str) -> Flow:
    """Import and return the :class:`Flow` that ``ref`` names.

    ``module:attr`` is imported like ``python -m`` would (the current directory is on the
    import path); ``file.py:attr`` is executed as a module under a private name (its
    directory on the import path, so its sibling imports work), which is why a flow file
    should start its runs under ``if __name__ == "__main__":``. Raises
    :class:`FlowImportError` saying what was wrong.
    """
    target, sep, attr = ref.rpartition(":")
    if not sep or not target or not attr.isidentifier():
        raise FlowImportError(
            f"flow reference {ref!r} must look like package.module:attr or "
            "path/to/file.py:attr")
    if target.endswith(".py") or os.sep in target or "/" in target:
        module = _import_file(ref, Path(target))
    else:
        module = _import_module(ref, target)
    try:
        flow = getattr(module, attr)
    except AttributeError:
        raise FlowImportError(
            f"cannot load flow {ref!r}: {target} has no attribute {attr!r}") from None
    if not isinstance(flow, Flow):
        raise FlowImportError(
            f"cannot load flow {ref!r}: {attr} is a {type(flow).__name__}, not a Flow")
    return flow


def _import_module(ref: str, name: str) -> object:
    # The console script's sys.path holds the script's directory, not the working
    # directory; add the latter, as `python -m`, uvicorn and celery do, so the module
    # that was importable when the run started is importable here too.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except Exception as exc:
        raise FlowImportError(
            f"cannot import flow {ref!r}: {type(exc).__name__}: {exc}") from None


def _import_file(ref: str, path: Path) -> object:
    path = path.expanduser().resolve()
    if not path.is_file():
        raise FlowImportError(f"cannot import flow {ref!r}: no file {str(path)!r}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    name = f"_purpose_agent_flow_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowImportError(f"cannot import flow {ref!r}: {str(path)!r} is not a module")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise FlowImportError(
            f"cannot import flow {ref!r}: {type(exc).__name__}: {exc}") from None
    return module


__all__ = ["load_flow"]
