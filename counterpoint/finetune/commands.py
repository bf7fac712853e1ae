"""What ``counterpoint finetune`` runs, as plain functions (the CLI wires them to flags).

:func:`prepare_data` is the data step: it writes the training and held-out sets as JSONL next to
a ``manifest.json`` holding each file's sha256, the seed, the counts and the library's size, so a
recipe can name exactly the data an adapter was trained on. Training (peft LoRA) is a later step
that reads these files.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from counterpoint.errors import ConfigError
from counterpoint.finetune import library
from counterpoint.finetune.data import build_dataset, summarise, write_jsonl
from counterpoint.finetune.traces import Sample
from counterpoint.tools import Toolset

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
    out: str | Path,
    n: int = 1000,
    seed: int = 0,
    held_out: int = 200,
    *,
    tools: str | Toolset | None = None,
    execute: bool = False,
    shapes: Sequence[tuple[str, float]] | None = None,
) -> dict[str, Any]:
    """Write ``train.jsonl`` (``n`` samples), ``held_out.jsonl`` and ``manifest.json`` to ``out``.

    ``tools`` is a user's toolset (or its ``pkg.mod:attr`` path) to build the data over instead
    of the project's library, with generic questions (:mod:`counterpoint.finetune.usertools`;
    its held-out split uses the same tools with other values); ``execute`` runs the user's real
    tools for the results instead of making them up from the return types. ``shapes`` weighs the
    training samples' shapes (:func:`~counterpoint.finetune.data.parse_shapes`); the held-out
    set keeps the default mix, so its figures stay comparable.

    Returns the manifest: per file its path, sha256 and summary, plus the seed and the library.
    """
    folder = Path(out)
    manifest: dict[str, Any] = {"seed": seed}
    splits: dict[str, list[Sample]]
    if tools is None:
        manifest["library"] = library_summary()
        splits = {
            "train": build_dataset(n, seed, "train", shapes),
            "held_out": build_dataset(held_out, seed, "held_out"),
        }
        if shapes is not None:
            manifest["shapes"] = dict(shapes)
    elif shapes is not None:
        raise ConfigError(
            "--shapes weighs the project library's samples: leave it out with --tools"
        )
    else:
        from counterpoint.finetune.usertools import build_user_dataset, load_toolset, user_catalog

        toolset = load_toolset(tools) if isinstance(tools, str) else tools
        catalog = user_catalog(toolset, execute=execute)
        manifest["library"] = {
            "toolset": tools if isinstance(tools, str) else "python",
            "functions": len(catalog.entries),
            "tools": [e.name for e in catalog.entries],
            "left_out": [
                t.name for t in toolset if t.name not in {e.name for e in catalog.entries}
            ],
            "questions": "generic (from the tools' JSON schemas)",
            "results": "executed" if execute else "made up from the return types",
        }
        splits = {
            "train": build_user_dataset(catalog, n, seed, "train"),
            "held_out": build_user_dataset(catalog, held_out, seed, "held_out"),
        }
    manifest["files"] = {}
    for split, samples in splits.items():
        path = folder / f"{split}.jsonl"
        digest = write_jsonl(samples, path)
        manifest["files"][split] = {"path": str(path), "sha256": digest, **summarise(samples)}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    return manifest
