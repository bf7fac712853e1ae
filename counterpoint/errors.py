"""Project exceptions.

Every error a user can cause (bad configuration, an unknown model, a malformed dataset, a bad CLI
argument) is a :class:`CounterpointError` whose message says what to do. The CLI prints it on one
line and exits with status 2.
"""

from __future__ import annotations

__all__ = [
    "ConfigError",
    "CounterpointError",
    "ModelNotFoundError",
    "ProtocolError",
]


class CounterpointError(Exception):
    """Base class of every error a user can cause and fix."""


class ConfigError(CounterpointError):
    """A setting, argument or environment variable has a value that cannot be used."""


class ModelNotFoundError(CounterpointError):
    """The requested model is neither a local directory, a cached hub id, nor the embedded model."""


class ProtocolError(CounterpointError):
    """The model or a backend broke the CML protocol in a way the runtime cannot recover from."""
