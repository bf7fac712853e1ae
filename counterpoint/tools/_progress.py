"""The :class:`Progress` handle a running tool uses to report how far it has got."""

from __future__ import annotations

import math
from collections.abc import Callable

__all__ = ["Progress", "ProgressSink"]

ProgressSink = Callable[[str, float | None], None]


class Progress:
    """Report the progress of a running tool call.

    Declare a parameter annotated ``Progress`` (or ``Progress | None``) on a tool function and the
    executor injects one; the parameter is not part of the tool's schema, so the model never sees
    it. Each call emits a ``CallProgress`` event. It is safe to call from a sync tool running in a
    worker thread. Without a sink (a tool invoked outside an executor) calls do nothing.
    """

    __slots__ = ("_sink",)

    def __init__(self, sink: ProgressSink | None = None) -> None:
        self._sink = sink

    def __call__(self, message: str, fraction: float | None = None) -> None:
        """Report ``message`` and, when known, the ``fraction`` done (between 0 and 1)."""
        if fraction is not None:
            fraction = float(fraction)
            if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
                raise ValueError(f"progress fraction must be between 0 and 1, got {fraction}")
        if self._sink is not None:
            self._sink(str(message), fraction)
