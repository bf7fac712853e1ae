"""Model backends behind the Model/Decoder seam.

Heavy backends (transformers, httpx) are imported lazily: import them from their modules,
``counterpoint.runtime.backends.transformers`` and ``counterpoint.runtime.backends.openai``, or
name a model with :func:`resolve_model`.
"""

from counterpoint.runtime.backends.base import (
    Decoder,
    Message,
    Model,
    Prompt,
    SamplingParams,
    Segment,
    Token,
)
from counterpoint.runtime.backends.registry import resolve_model

__all__ = [
    "Decoder",
    "Message",
    "Model",
    "Prompt",
    "SamplingParams",
    "Segment",
    "Token",
    "resolve_model",
]
