"""Resolving a model spec (``embedded``, a path, a hub id, ``openai:NAME``) to a Model.

Loaded local models are cached per process, so several agents share one model (and its worker
thread); their sessions interleave at token granularity.
"""

from __future__ import annotations

import os
import threading

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends.base import Model

__all__ = ["resolve_model"]

_lock = threading.Lock()
_loaded: dict[str, Model] = {}


def resolve_model(
    spec: str | None = None, *, base_url: str | None = None, adapter: str | None = None
) -> Model:
    """Return the Model a spec names.

    - ``None`` or ``"embedded"``: the embedded SmolLM2-135M-Instruct (env ``COUNTERPOINT_MODEL``
      overrides the default);
    - ``"openai:NAME"``: model NAME on an OpenAI-compatible server at ``base_url`` (or
      ``OPENAI_BASE_URL``);
    - anything else: a local directory or a Hugging Face id already in the local cache.

    ``adapter``: a LoRA adapter folder merged into a local model; None (the default): the
    project's CML adapter on the embedded model and none on others; ``"none"``: the base model.
    A server's model takes none (a ConfigError says so).
    """
    spec = spec or os.environ.get("COUNTERPOINT_MODEL") or "embedded"
    if spec.startswith("openai:"):
        if adapter is not None and adapter.lower() != "none":
            raise ConfigError(
                f"--adapter {adapter!r}: adapters apply to local models, not to {spec!r} "
                "(load the adapter in the server instead, or pass --adapter none)"
            )
        from counterpoint.runtime.backends.openai import OpenAIModel

        return OpenAIModel(spec.removeprefix("openai:"), base_url=base_url)
    from counterpoint.runtime.backends._adapter import DEFAULT_ADAPTER, resolve_adapter

    folder = resolve_adapter(adapter or DEFAULT_ADAPTER, embedded=spec == "embedded")
    key = spec if folder is None else f"{spec}+{os.path.abspath(folder)}"
    with _lock:
        model = _loaded.get(key)
        if model is None:
            from counterpoint.runtime.backends.transformers import TransformersModel

            local = None if spec == "embedded" else spec
            model = TransformersModel.load(local, adapter=folder)
            _loaded[key] = model
        return model
