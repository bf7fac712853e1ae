"""Errors of the trace store and the tracer.

Every one is a :class:`~counterpoint.errors.CounterpointError` whose message names the file or the
run concerned and says what to do.
"""

from __future__ import annotations

from counterpoint.errors import CounterpointError

__all__ = [
    "AmbiguousRunError",
    "TraceStoreError",
    "TraceWriteError",
    "TracerClosedError",
    "UnknownRunError",
]


class TraceStoreError(CounterpointError):
    """The traces file cannot be used: corrupt, foreign, newer than this version, unreachable."""


class UnknownRunError(CounterpointError):
    """No run has the given id (or id prefix)."""


class AmbiguousRunError(CounterpointError):
    """Several runs start with the given id prefix."""


class TraceWriteError(CounterpointError):
    """The background writer could not commit some trace records."""


class TracerClosedError(CounterpointError):
    """An event or a record was sent to a tracer after :meth:`close`."""
