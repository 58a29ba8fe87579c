"""Lambda execution environments for concurrent invocations, in one test process.

Lambda runs concurrent invocations in separate execution environments, each with its own copy
of the handler's module state (crhelper's ``CfnResource``, the cached clients, the redactor).
Threads calling one imported handler would share that state, which Lambda never does; so each
concurrent invocation here gets the handler package imported afresh under its usual name, then
taken out of ``sys.modules`` again so the rest of the session keeps the original.

One module is shared: ``rotation``, which the entry point imports only when a rotation step
arrives, resolves to the session's copy at that time. It keeps no state of its own but the
redactor's memory of tokens (which masks log lines; the rotation steps log no token).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import cache
from types import CodeType, ModuleType
from typing import Any, ClassVar

import boto3

from tests.rig.harness import Handler

PACKAGE = "secure_tunnel_handler"
_import_lock = threading.Lock()


class _CompiledOnce(importlib.machinery.SourceFileLoader):
    """Loads the package's modules from code compiled once per session: the copies run the
    same code, and compiling every copy anew (no .pyc is written here) is most of their cost."""

    code: ClassVar[dict[str, CodeType]] = {}

    def get_code(self, fullname: str) -> CodeType:
        path = self.get_filename(fullname)
        if path not in self.code:
            compiled = super().get_code(fullname)
            assert compiled is not None
            self.code[path] = compiled
        return self.code[path]


class _CopyFinder(importlib.abc.MetaPathFinder):
    """Finds the package's modules as usual, to be loaded by :class:`_CompiledOnce`."""

    def find_spec(
        self, fullname: str, path: Any, target: Any = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != PACKAGE and not fullname.startswith(f"{PACKAGE}."):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.origin is None:
            return spec
        loader = _CompiledOnce(fullname, spec.origin)
        return importlib.util.spec_from_file_location(
            fullname, spec.origin, loader=loader, submodule_search_locations=spec.submodule_search_locations
        )


def _package_modules() -> dict[str, ModuleType]:
    return {n: m for n, m in sys.modules.items() if n == PACKAGE or n.startswith(f"{PACKAGE}.")}


@cache
def _shared_session() -> boto3.session.Session:
    return boto3.session.Session()


@contextmanager
def _one_model_loader() -> Iterator[None]:
    """Build the environment's clients from one shared boto3 session. Each environment still
    has its own clients and connection pools; only the parsed service models are shared, whose
    loading (about 80 ms a session) would run under this process's one interpreter lock."""
    session = _shared_session()
    original = boto3.session.Session
    boto3.session.Session = lambda *args, **kwargs: session  # type: ignore[misc,assignment]
    try:
        yield
    finally:
        boto3.session.Session = original  # type: ignore[misc]


def new_environment(safety_margin: float | None = None, *, warm: bool = False) -> Handler:
    """The entry point of a fresh copy of the handler package (a new execution environment);
    ``safety_margin`` scales the copy's time budget down (seconds kept back for clean-up);
    ``warm`` creates its AWS clients now, as an earlier invocation of a warm environment has."""
    with _import_lock:
        originals = _package_modules()
        for name in originals:
            del sys.modules[name]
        finder = _CopyFinder()
        sys.meta_path.insert(0, finder)
        try:
            entrypoint: Any = importlib.import_module(f"{PACKAGE}.entrypoint")
        finally:
            sys.meta_path.remove(finder)
            for name in _package_modules():
                del sys.modules[name]
            sys.modules.update(originals)
    if safety_margin is not None:
        entrypoint.SAFETY_MARGIN_SECONDS = safety_margin
    if warm:
        with _one_model_loader():
            entrypoint._clients()
    handler: Callable[[dict[str, Any], Any], Any] = entrypoint.handler
    return handler
