"""Declaring tools, validating their arguments, and executing calls concurrently."""

from counterpoint.tools.executor import Executor
from counterpoint.tools.tool import (
    FunctionTool,
    Progress,
    SchemaTool,
    Tool,
    ToolArgumentError,
    ToolDefinitionError,
    tool,
)
from counterpoint.tools.toolset import ToolLike, Toolset

__all__ = [
    "Executor",
    "FunctionTool",
    "Progress",
    "SchemaTool",
    "Tool",
    "ToolArgumentError",
    "ToolDefinitionError",
    "ToolLike",
    "Toolset",
    "tool",
]
