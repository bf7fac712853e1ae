"""Loading the run screen's tools from a Python module path (``--tools pkg.mod[:name]``)."""

from counterpoint.tools.loading import load_tools

__all__ = ["load_tools"]
