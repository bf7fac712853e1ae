"""LoRA adapters for the local backend: check one, merge it into a loaded model.

``apply_adapter(hf_model, path)`` loads a peft LoRA adapter (``adapter_config.json`` and
``adapter_model.safetensors``, as ``counterpoint finetune train`` writes them) and merges it into
the model's weights, so decoding costs exactly what it cost without it. ``check_adapter(path)``
reads the folder without touching a model and raises one :class:`ConfigError` line naming the
path and how to get a working one back. Neither ever reaches the network.
"""

from __future__ import annotations

import json
import os
import struct
import warnings
from pathlib import Path
from typing import Any

from counterpoint.errors import ConfigError

__all__ = [
    "ADAPTER_CONFIG",
    "ADAPTER_WEIGHTS",
    "DEFAULT_ADAPTER",
    "EMBEDDED_ADAPTER",
    "EMBEDDED_ADAPTER_LABEL",
    "apply_adapter",
    "check_adapter",
    "resolve_adapter",
]

ADAPTER_CONFIG = "adapter_config.json"
ADAPTER_WEIGHTS = "adapter_model.safetensors"
EMBEDDED_ADAPTER = Path(__file__).resolve().with_name("embedded_adapter")
"""The project's CML LoRA adapter for the embedded model, shipped with the package (its
``recipe.json`` and ``loss.png`` say how it was trained)."""
EMBEDDED_ADAPTER_LABEL = "cml"
"""What the embedded model's name gets appended when it runs with the shipped adapter."""
DEFAULT_ADAPTER = "default"
"""The ``adapter`` value that means: the shipped adapter on the embedded model, none elsewhere."""
_REMEDY = (
    "train one with `counterpoint finetune train --out DIR`, restore the shipped one "
    "(`git checkout -- PATH` in a checkout, or reinstall counterpoint), or pass --adapter none "
    "for the raw model"
)
_MAX_HEADER = 100 * 2**20


def _fail(path: Path, problem: str) -> ConfigError:
    return ConfigError(f"adapter {path}: {problem}; {_REMEDY.replace('PATH', str(path))}")


def _check_weights(path: Path, weights: Path) -> int:
    """The number of tensors in a safetensors file, read from its header alone."""
    try:
        with weights.open("rb") as fh:
            head = fh.read(8)
            if head.startswith(b"version "):
                raise _fail(path, f"{weights.name} is a Git LFS pointer, not the weights")
            if len(head) < 8:
                raise _fail(path, f"{weights.name} is truncated ({len(head)} bytes)")
            (size,) = struct.unpack("<Q", head)
            if size <= 1 or size > _MAX_HEADER:
                raise _fail(path, f"{weights.name} is not a safetensors file")
            header = json.loads(fh.read(size))
        total = weights.stat().st_size
    except OSError as exc:
        raise _fail(path, f"cannot read {weights.name}: {exc.strerror or exc}") from None
    except ValueError:
        raise _fail(path, f"{weights.name} has a corrupt header") from None
    tensors = (
        {k: v for k, v in header.items() if k != "__metadata__"} if isinstance(header, dict) else {}
    )
    if not tensors:
        raise _fail(path, f"{weights.name} holds no tensors")
    end = max(int(v["data_offsets"][1]) for v in tensors.values() if isinstance(v, dict))
    if 8 + size + end > total:
        raise _fail(path, f"{weights.name} is truncated ({total} of {8 + size + end} bytes)")
    if not any("lora_" in k for k in tensors):
        raise _fail(path, f"{weights.name} holds no LoRA weights")
    return len(tensors)


def check_adapter(path: str | os.PathLike[str]) -> Path:
    """Check that ``path`` holds a readable LoRA adapter; return it as a :class:`Path`.

    Raises :class:`ConfigError` with one line that names the path, what is wrong (missing,
    not a folder, a file missing, unreadable JSON, a truncated or Git-LFS-pointer weights file,
    not LoRA) and how to get one back.
    """
    folder = Path(path).expanduser()
    if not folder.exists():
        raise _fail(folder, "not found")
    if not folder.is_dir():
        raise _fail(folder, "is a file, not an adapter folder")
    config_file = folder / ADAPTER_CONFIG
    weights = folder / ADAPTER_WEIGHTS
    for needed in (config_file, weights):
        if not needed.is_file():
            raise _fail(folder, f"{needed.name} is missing")
    try:
        config = json.loads(config_file.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError):
        raise _fail(folder, f"{ADAPTER_CONFIG} is not valid JSON") from None
    if not isinstance(config, dict):
        raise _fail(folder, f"{ADAPTER_CONFIG} is not a JSON object")
    kind = str(config.get("peft_type", "")).upper()
    if kind != "LORA":
        raise _fail(folder, f"{ADAPTER_CONFIG} describes a {kind or 'unknown'} adapter, not LoRA")
    _check_weights(folder, weights)
    return folder


def resolve_adapter(adapter: str | os.PathLike[str] | None, *, embedded: bool) -> Path | None:
    """The adapter folder an ``adapter`` value names, or ``None`` for the base model.

    ``None`` or ``"none"``: the base model. ``"default"``: :data:`EMBEDDED_ADAPTER` when the
    model is the embedded one, else the base model. Anything else: that folder.
    """
    if adapter is None or str(adapter).lower() == "none":
        return None
    if str(adapter) == DEFAULT_ADAPTER:
        return EMBEDDED_ADAPTER if embedded else None
    return Path(adapter).expanduser()


def apply_adapter(hf_model: Any, path: str | os.PathLike[str]) -> Any:
    """Merge the LoRA adapter at ``path`` into ``hf_model``; return the merged model.

    The model is changed in place (its weights become base + LoRA delta) and is a plain
    transformers model again afterwards, so decoding speed is unchanged. Raises
    :class:`ConfigError` (one line) if the adapter is missing, corrupt or does not fit the model.
    """
    folder = check_adapter(path)
    from peft import PeftModel

    try:
        with warnings.catch_warnings():  # transformers' own deprecation notice, inside peft
            warnings.filterwarnings("ignore", category=FutureWarning)
            peft_model = PeftModel.from_pretrained(hf_model, str(folder), is_trainable=False)
            merged = peft_model.merge_and_unload()
    except Exception as exc:  # a shape or module mismatch: the adapter is for another model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise _fail(
            folder, f"does not fit this model ({type(exc).__name__}: {first[:200]})"
        ) from None
    vars(merged).pop("peft_config", None)
    merged.eval()
    return merged
