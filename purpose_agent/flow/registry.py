"""Which flows may run here: the ones a person or operator gave, never one a store chose.

A store holds data, never code to run. A run records where its flow lived
(``flow_ref``, ``flow_file``) so that a later process can find it again, but whoever can
write to the store can write those fields too. So a record is only a hint that *selects
among* the flows this process was given:

- :class:`FlowRef` is a reference someone gave (``package.module:attr`` or
  ``path/to/file.py:attr``) together with who gave it; :meth:`FlowRef.load` imports it.
- :class:`RecordedFlow` is what a run says about its flow: compared, never imported.
- :class:`FlowRegistry` holds the given flows (references, or :class:`Flow` objects a
  worker was started with) and :meth:`FlowRegistry.resolve` returns the one a run
  selects, or raises :class:`FlowNotAllowed` without importing anything.
- :func:`declared_refs` reads the allow-list a project declares: ``[tool.purpose-agent]
  flows = [...]`` in the working directory's ``pyproject.toml`` and
  ``$PURPOSE_AGENT_FLOWS`` (comma-separated).

Nothing read from a store is ever put on ``sys.path``: a module reference's directory
(the working directory it was given in) goes there, and a file reference's own directory
(so its sibling imports work), and only when that reference is loaded.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import sys
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from purpose_agent.errors import FlowChangedError, FlowImportError, FlowNotAllowed
from purpose_agent.flow.graph import Flow

ENV_VAR = "PURPOSE_AGENT_FLOWS"
REF_SHAPE = "package.module:attr or path/to/file.py:attr"


def _is_file_target(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


@dataclass(frozen=True, slots=True)
class RecordedFlow:
    """What a run recorded about its flow: its name, reference and file. Data from a
    store, so only ever compared with the references given, never imported."""

    name: str | None
    ref: str | None
    file: str | None = None

    @classmethod
    def of(cls, state: Any) -> RecordedFlow:
        """From a :class:`RunState` (or anything with ``flow``, ``flow_ref``, ``flow_file``);
        a field that is not a string (a damaged or forged record) counts as absent."""
        def text(name: str) -> str | None:
            value = getattr(state, name, None)
            return value if isinstance(value, str) and value else None
        return cls(text("flow"), text("flow_ref"), text("flow_file"))

    def describe(self) -> str:
        """``ref`` (with its file, when the reference is a module), for messages."""
        where = self.ref or "no importable reference"
        if self.file and self.ref and not _is_file_target(self.ref.rpartition(":")[0]):
            where += f" in {self.file}"
        return where

    def keys(self) -> set[str]:
        """Identities to compare with a given reference's: ``module:attr`` and, where the
        record names an absolute file, ``/abs/file.py:attr``."""
        if not self.ref:
            return set()
        target, sep, attr = self.ref.rpartition(":")
        if not sep or not target or not attr.isidentifier():
            return set()
        keys = set()
        is_file = _is_file_target(target)
        if not is_file:
            keys.add(f"{target}:{attr}")
        file = target if is_file else self.file
        if file and os.path.isabs(file):
            try:
                keys.add(f"{_real(file)}:{attr}")
            except (OSError, ValueError, RuntimeError):
                pass  # no such path can be given (NUL byte, symlink loop): matches nothing
        return keys

    def suggestion(self) -> str | None:
        """The reference a person could give to load this run's flow from anywhere, if
        they trust it: the recorded file for a top-level module, else the reference."""
        if not self.ref:
            return None
        target, _, attr = self.ref.rpartition(":")
        if self.file and "." not in target and not _is_file_target(target):
            return f"{self.file}:{attr}"
        return self.ref


def _real(path: str | Path) -> str:
    return str(Path(path).expanduser().resolve())


@dataclass(frozen=True, slots=True)
class FlowRef:
    """A flow reference that a person or operator gave, and who gave it (``source``, for
    messages: ``--flow``, ``pyproject.toml``, ``$PURPOSE_AGENT_FLOWS``, ``built in``).

    ``module:attr`` imports ``module`` with ``base`` (the directory the reference was
    given in; None for modules importable as installed) first on the import path, as
    ``python -m`` does; ``file.py:attr`` (relative to ``base``) runs the file as a module
    under a private name, its directory on the import path so its sibling imports work.
    """

    text: str
    source: str
    attr: str
    module: str | None = None
    path: Path | None = None
    base: Path | None = None

    @classmethod
    def parse(cls, text: str, *, source: str, base: Path | None = None) -> FlowRef:
        """Check the shape of ``text`` (nothing is imported). Raises FlowImportError."""
        target, sep, attr = text.strip().rpartition(":")
        if not sep or not target or not attr.isidentifier():
            raise FlowImportError(f"flow reference {text!r} (from {source}) must look like "
                                  f"{REF_SHAPE}")
        if _is_file_target(target):
            path = Path(target).expanduser()
            if not path.is_absolute():
                path = (base or Path.cwd()) / path
            return cls(text.strip(), source, attr, path=path.resolve(), base=base)
        if not all(part.isidentifier() for part in target.split(".")):
            raise FlowImportError(f"flow reference {text!r} (from {source}) must look like "
                                  f"{REF_SHAPE}")
        return cls(text.strip(), source, attr, module=target, base=base)

    def keys(self) -> set[str]:
        """This reference's identities (see :meth:`RecordedFlow.keys`), found without
        running any code: a module's file is looked up as the import system would."""
        if self.path is not None:
            return {f"{self.path}:{self.attr}"}
        assert self.module is not None
        keys = {f"{self.module}:{self.attr}"}
        origin = _find_origin(self.module, self.base)
        if origin is not None:
            keys.add(f"{origin}:{self.attr}")
        return keys

    def load(self, *, recorded: RecordedFlow | None = None) -> Flow:
        """Import and return the :class:`Flow` this reference names. ``recorded`` (the
        run's account of its flow) only makes errors say more, e.g. that a directory
        shadows the module the run was started from. Raises FlowImportError."""
        module = self._import()
        flow = getattr(module, self.attr, None)
        if flow is None:
            raise FlowImportError(f"cannot load flow {self.text!r} (from {self.source}): "
                                  + _missing(module, self, recorded))
        if not isinstance(flow, Flow):
            raise FlowImportError(f"cannot load flow {self.text!r} (from {self.source}): "
                                  f"{self.attr} is a {type(flow).__name__}, not a Flow")
        return flow

    def _import(self) -> ModuleType:
        if self.path is not None:
            return _import_file(self, self.path)
        assert self.module is not None
        # The console script's sys.path holds the script's directory, not the directory
        # the reference was given in; add the latter, as `python -m`, uvicorn and celery
        # do. Only a given reference's directory: never one read from a store.
        if self.base is not None and str(self.base) not in sys.path:
            sys.path.insert(0, str(self.base))
        try:
            return importlib.import_module(self.module)
        except Exception as exc:
            raise FlowImportError(f"cannot import flow {self.text!r} (from {self.source}): "
                                  f"{type(exc).__name__}: {exc}") from None


def _find_origin(module: str, base: Path | None) -> str | None:
    """The file ``import module`` would load, found without executing anything (parent
    packages are searched, not imported)."""
    loaded = sys.modules.get(module)
    if loaded is not None:
        file = getattr(loaded, "__file__", None)
        return _real(file) if file else None
    search: list[str] = ([str(base)] if base is not None else []) + sys.path
    spec = None
    parts = module.split(".")
    for i in range(len(parts)):
        name = ".".join(parts[: i + 1])
        parent = sys.modules.get(name)
        if parent is not None and i < len(parts) - 1:
            search = list(getattr(parent, "__path__", None) or [])
            continue
        try:
            spec = importlib.machinery.PathFinder.find_spec(name, search)
        except (ImportError, ValueError):
            return None
        if spec is None:
            return None
        search = list(spec.submodule_search_locations or [])
    if spec is None or not spec.has_location or not spec.origin:
        return None
    return _real(spec.origin)


def _missing(module: ModuleType, ref: FlowRef, recorded: RecordedFlow | None) -> str:
    """Why ``module`` has no ``ref.attr``: often a directory or another file that shadows
    the module the run was started from."""
    name = module.__name__ if ref.module is not None else str(ref.path)
    started = (f"; the run was started from {recorded.file}"
               if recorded is not None and recorded.file else "")
    file = getattr(module, "__file__", None)
    if file is None and ref.module is not None:
        places = ", ".join(str(p) for p in getattr(module, "__path__", []) or [])
        by_file = (f"{recorded.file}:{ref.attr}" if recorded is not None and recorded.file
                   else f"path/to/{name.replace('.', '/')}.py:{ref.attr}")
        return (f"{name} here is the directory {places} (a namespace package), which "
                f"shadows the module {name}{started}; run from the directory that has the "
                f"module, or give the module's file instead ({by_file})")
    if (ref.module is not None and recorded is not None and recorded.file
            and _real(file or "") != _real(recorded.file)):
        return (f"{name} here is {file}, which has no attribute {ref.attr!r}: it shadows "
                f"the module {name}{started}")
    return f"{name} has no attribute {ref.attr!r}"


def _import_file(ref: FlowRef, path: Path) -> ModuleType:
    if not path.is_file():
        raise FlowImportError(f"cannot import flow {ref.text!r} (from {ref.source}): "
                              f"no file {str(path)!r}")
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    name = f"_purpose_agent_flow_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowImportError(f"cannot import flow {ref.text!r} (from {ref.source}): "
                              f"{str(path)!r} is not a module")
    module = importlib.util.module_from_spec(spec)
    if str(path.parent) not in sys.path:
        sys.path.insert(0, str(path.parent))
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        del sys.modules[name]
        raise FlowImportError(f"cannot import flow {ref.text!r} (from {ref.source}): "
                              f"{type(exc).__name__}: {exc}") from None
    return module


def check_flow_name(flow: Flow, recorded: RecordedFlow, *, run_id: str, ref: str) -> Flow:
    """``flow`` if it is the flow the run recorded (by name), else FlowChangedError."""
    if recorded.name is not None and recorded.name != flow.name:
        raise FlowChangedError(
            f"run {run_id!r} was started by flow {recorded.name!r}, not {flow.name!r} "
            f"(loaded from {ref}); nothing was run. The run records "
            f"{recorded.describe()}")
    return flow


class FlowRegistry:
    """The flows that may run in this process, and which one a run selects.

    ``refs`` are references given by a person or operator (``--flow``, the project's
    declared list); ``flows`` are :class:`Flow` objects a process was started with
    (``Worker(flows=[...])``), selected by the name a run recorded. A run's recorded
    reference is compared with the given ones and never imported itself.
    """

    def __init__(self, refs: Iterable[FlowRef] = (), *, flows: Iterable[Flow] = ()) -> None:
        self.refs = tuple(refs)
        self.flows = tuple(flows)

    def find(self, recorded: RecordedFlow) -> FlowRef | Flow | None:
        """The given flow a run selects, or None; imports nothing."""
        for flow in self.flows:
            if recorded.name is not None and flow.name == recorded.name:
                return flow
        wanted = recorded.keys()
        if not wanted:
            return None
        for ref in self.refs:
            if ref.keys() & wanted:
                return ref
        return None

    def resolve(self, recorded: RecordedFlow, *, run_id: str) -> Flow:
        """The :class:`Flow` to advance run ``run_id`` with: the given flow its record
        selects, imported if it is a reference, and checked to have the recorded name.

        Raises :class:`FlowNotAllowed` (nothing imported) when the record selects none of
        the given flows, FlowChangedError when the selected flow has another name, and
        FlowImportError when a given reference cannot be imported.
        """
        found = self.find(recorded)
        if found is None:
            raise self.refusal(recorded, run_id=run_id)
        if isinstance(found, Flow):
            return found
        return check_flow_name(found.load(recorded=recorded), recorded, run_id=run_id,
                               ref=found.text)

    def allowed(self) -> tuple[str, ...]:
        """The given flows, for messages: ``ref (from source)`` and ``name (object)``."""
        return tuple([f"{ref.text} ({ref.source})" for ref in self.refs]
                     + [f"flow {flow.name!r}" for flow in self.flows])

    def refusal(self, recorded: RecordedFlow, *, run_id: str,
                how_to_allow: str | None = None) -> FlowNotAllowed:
        """The error for a run whose recorded flow is none of the given ones."""
        named = f" (named {recorded.name!r})" if recorded.name else ""
        what = (f"run {run_id!r} records flow {recorded.describe()}{named}, which is not one "
                "of the flows allowed here" if recorded.ref else
                f"run {run_id!r}{named} records no reference to its flow (it was defined "
                "where another process cannot import it)")
        allowed = self.allowed()
        listing = "; ".join(allowed) if allowed else "none"
        suggestion = recorded.suggestion()
        how = how_to_allow or (
            f"If you trust that code, give it to this process (e.g. {suggestion})"
            if suggestion else "Give this process the flow the run was started with")
        return FlowNotAllowed(
            f"{what}, so nothing was imported or run. Allowed: {listing}. {how}",
            run_id=run_id, recorded=recorded,             allowed=allowed)


def declared_refs(cwd: Path | None = None,
                  environ: Mapping[str, str] | None = None) -> list[FlowRef]:
    """The flows a project declares: ``[tool.purpose-agent] flows = ["pkg.mod:flow", ...]``
    in ``cwd``'s ``pyproject.toml`` (only there: a file in a parent directory, which
    someone else may own, declares nothing), then ``$PURPOSE_AGENT_FLOWS``
    (comma-separated). Relative file references are relative to ``cwd``; nothing is
    imported. Raises FlowImportError for a malformed declaration."""
    cwd = (cwd or Path.cwd()).resolve()
    environ = os.environ if environ is None else environ
    refs: list[FlowRef] = []
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        try:
            config = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise FlowImportError(f"cannot read the flows declared in {pyproject}: "
                                  f"{exc}") from None
        declared = config.get("tool", {}).get("purpose-agent", {}).get("flows", [])
        if not isinstance(declared, list) or not all(isinstance(d, str) for d in declared):
            raise FlowImportError(
                f"{pyproject}: [tool.purpose-agent] flows must be a list of strings like "
                f"\"{REF_SHAPE.split(' or ')[0]}\", got {declared!r}")
        source = f"{pyproject}"
        refs += [FlowRef.parse(text, source=source, base=cwd) for text in declared]
    for text in environ.get(ENV_VAR, "").split(","):
        if text.strip():
            refs.append(FlowRef.parse(text, source=f"${ENV_VAR}", base=cwd))
    return refs


__all__ = ["ENV_VAR", "REF_SHAPE", "FlowRef", "FlowRegistry", "RecordedFlow",
           "check_flow_name", "declared_refs"]
