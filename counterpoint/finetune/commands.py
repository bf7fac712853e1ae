"""What ``counterpoint finetune`` runs, as plain functions (the CLI wires them to flags).

:func:`prepare_data` is the data step: it writes the training and held-out sets as JSONL next to
a ``manifest.json`` holding each file's sha256, the seed, the counts and the library's size, so a
recipe can name exactly the data an adapter was trained on. Training (peft LoRA) is a later step
that reads these files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from counterpoint.finetune import library
from counterpoint.finetune.data import build_dataset, summarise, write_jsonl

__all__ = ["library_summary", "prepare_data"]


def library_summary() -> dict[str, Any]:
    """The function library's size: functions, domains, and the held-out split."""
    held = library.entries("held_out")
    return {
        "functions": len(library.entries()),
        "domains": len(library.domains()),
        "train_functions": len(library.entries("train")),
        "held_out_functions": len(held),
        "held_out_domains": sorted(library.HELD_OUT_DOMAINS),
    }


def prepare_data(
    out: str | Path, n: int = 1000, seed: int = 0, held_out: int = 200
) -> dict[str, Any]:
    """Write ``train.jsonl`` (``n`` samples), ``held_out.jsonl`` and ``manifest.json`` to ``out``.

    Returns the manifest: per file its path, sha256 and summary, plus the seed and the library.
    """
    folder = Path(out)
    manifest: dict[str, Any] = {"seed": seed, "library": library_summary(), "files": {}}
    for split, count in (("train", n), ("held_out", held_out)):
        samples = build_dataset(count, seed, split)  # type: ignore[arg-type]
        path = folder / f"{split}.jsonl"
        digest = write_jsonl(samples, path)
        manifest["files"][split] = {"path": str(path), "sha256": digest, **summarise(samples)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
