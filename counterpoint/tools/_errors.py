"""The exceptions of the tools SDK (re-exported by :mod:`counterpoint.tools.tool`)."""

from __future__ import annotations

from counterpoint.errors import ConfigError

__all__ = ["ToolArgumentError", "ToolDefinitionError"]


class ToolArgumentError(ValueError):
    """The arguments of a call do not fit the tool.

    The message is written for the model that made the call: which argument, what was expected,
    and the tool's signature, so that it can call again correctly. A tool may raise it itself to
    reject arguments that pass the schema but make no sense; the executor does not retry it.
    """


class ToolDefinitionError(ConfigError):
    """A tool cannot be built as declared (a bad name, an unsupported parameter type, a bad schema,
    a duplicate name in a toolset). The message says what to change."""
