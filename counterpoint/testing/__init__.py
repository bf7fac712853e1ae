"""Helpers for tests and benchmarks (as pydantic-ai ships ``TestModel``).

- :class:`ScriptedModel`: a deterministic model that emits a script at a given token rate.
- :class:`~counterpoint.testing.replay.ReplayModel`: teacher-forced replay on a real local model
  (imported on first use: it needs torch).
- :mod:`~counterpoint.testing.latency`: the AsyncLM latency model (the benchmarks' yardstick).
- :mod:`~counterpoint.testing.workloads`: benchmark workloads and an ideal scripted caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from counterpoint.testing.latency import (
    PlannedCall,
    bound_async,
    bound_parallel,
    bound_sync,
    lpt_order,
)
from counterpoint.testing.scripted import (
    ScriptedDecoder,
    ScriptedModel,
    ScriptPolicy,
    scripted_tokens,
)

if TYPE_CHECKING:
    from counterpoint.testing.replay import ReplayDecoder, ReplayModel

__all__ = [
    "PlannedCall",
    "ReplayDecoder",
    "ReplayModel",
    "ScriptPolicy",
    "ScriptedDecoder",
    "ScriptedModel",
    "bound_async",
    "bound_parallel",
    "bound_sync",
    "lpt_order",
    "scripted_tokens",
]


def __getattr__(name: str) -> Any:
    if name in ("ReplayModel", "ReplayDecoder"):
        from counterpoint.testing import replay

        return getattr(replay, name)
    raise AttributeError(f"module 'counterpoint.testing' has no attribute {name!r}")
