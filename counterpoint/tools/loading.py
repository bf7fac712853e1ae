"""Loading tools from a Python module path, as the CLI's ``--tools pkg.mod[:name]`` names them."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

from counterpoint.errors import ConfigError
from counterpoint.tools.tool import Tool
from counterpoint.tools.toolset import Toolset

__all__ = ["load_tools"]


def load_tools(spec: str) -> Toolset:
    """The tools ``spec`` names: ``pkg.mod`` (every tool defined in the module) or ``pkg.mod:name``
    (a Toolset, a tool, a list of tools or plain functions, or a function returning one). The
    module is looked for in the current folder too, as ``python -m`` does.

    Raises :class:`ConfigError` (one line for the CLI) if the module does not import or names no
    tools.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name.strip():
        raise ConfigError(f"--tools {spec!r}: give a module path such as mypkg.tools")
    try:
        module = _import(module_name)
    except Exception as exc:  # any import failure is the user's module, told in one line
        raise ConfigError(
            f"--tools {spec!r}: cannot import {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    if attr:
        if not hasattr(module, attr):
            raise ConfigError(f"--tools {spec!r}: {module_name!r} has no attribute {attr!r}")
        value: Any = getattr(module, attr)
        if callable(value) and not isinstance(value, Tool | Toolset):
            try:
                produced = value()
            except TypeError:
                produced = [value]
            value = produced
        if isinstance(value, Toolset):
            return value
        if isinstance(value, Tool):
            return Toolset([value])
        try:
            return Toolset(list(value))
        except Exception as exc:
            raise ConfigError(f"--tools {spec!r}: not a toolset or list of tools: {exc}") from None
    found = [v for v in vars(module).values() if isinstance(v, Tool)]
    sets = [v for v in vars(module).values() if isinstance(v, Toolset)]
    if not found and len(sets) == 1:
        return sets[0]
    if not found:
        raise ConfigError(f"--tools {spec!r}: {module_name!r} defines no tools (use @tool)")
    return Toolset(found)


def _import(module_name: str) -> Any:
    """Import a module, looking in the current folder too (the ``counterpoint`` script does not
    put it on ``sys.path``)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        cwd = os.getcwd()
        top = module_name.split(".", 1)[0]
        if exc.name != top or cwd in sys.path or "" in sys.path:
            raise
        sys.path.insert(0, cwd)
        try:
            return importlib.import_module(module_name)
        except ModuleNotFoundError:
            sys.path.remove(cwd)
            raise
