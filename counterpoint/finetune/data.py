"""The fine-tuning dataset: deterministic samples, JSONL with a content hash, token encoding.

``build_dataset(n, seed, split)`` returns ``n`` samples; sample ``i`` depends only on
``(seed, split, i)``, so a larger dataset extends a smaller one. ``write_jsonl`` writes one JSON
object per line (keys sorted, UTF-8) and returns the file's sha256, the hash a recipe records.

``encode_sample`` turns a sample into ``input_ids`` and ``labels`` for a causal LM the way the
runtime builds the context: the system and user messages rendered with the tokenizer's chat
template and a generation prompt (as ``TransformersModel`` renders them), then each segment of
the assistant's side encoded on its own (the model's tokens, then each injected interrupt as the
backend's ``extend`` encodes it), then the end-of-turn token. Labels are ``-100`` everywhere except
on the model-written segments and the end-of-turn token.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from counterpoint.errors import ConfigError
from counterpoint.finetune.library import SPLITS, Split
from counterpoint.finetune.traces import SHAPES, Sample, Segment, generate_sample

__all__ = [
    "IGNORE_INDEX",
    "Encodable",
    "Encoded",
    "Record",
    "Tokenizer",
    "build_dataset",
    "dataset_hash",
    "encode_sample",
    "jsonl_lines",
    "parse_shapes",
    "read_jsonl",
    "summarise",
    "write_jsonl",
]

IGNORE_INDEX = -100
"""The label of a token the loss skips (the prompt and every injected interrupt)."""


def _rng(seed: int, split: Split, index: int) -> random.Random:
    return random.Random(f"counterpoint-finetune/{seed}/{split}/{index}")


def build_dataset(
    n: int,
    seed: int = 0,
    split: Split = "train",
    shapes: Sequence[tuple[str, float]] | None = None,
) -> list[Sample]:
    """``n`` samples over the functions of ``split`` (``"train"`` or ``"held_out"``);
    ``shapes`` weighs the samples' shapes (see :func:`parse_shapes`) instead of the default mix.

    Deterministic: the same ``(n, seed, split, shapes)`` gives the same samples on every machine.
    """
    if split not in SPLITS:
        raise ConfigError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    if n < 0:
        raise ConfigError(f"the number of samples must be >= 0, got {n}")
    return [
        generate_sample(_rng(seed, split, i), split, f"{split}-{seed}-{i}", shapes=shapes)
        for i in range(n)
    ]


def parse_shapes(text: str) -> tuple[tuple[str, float], ...]:
    """``"single=3,no_call=2,parallel=1"`` as (shape, weight) pairs; a shape left out is not
    drawn. A ``ConfigError`` names an unknown shape or a bad weight."""
    pairs: list[tuple[str, float]] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        name, sep, weight = part.partition("=")
        name = name.strip()
        if name not in SHAPES:
            raise ConfigError(f"unknown shape {name!r} in --shapes: use {', '.join(SHAPES)}")
        try:
            value = float(weight) if sep else 1.0
        except ValueError:
            raise ConfigError(f"--shapes: {part!r} needs a number after '='") from None
        if not value >= 0 or value == float("inf"):
            raise ConfigError(f"--shapes: the weight of {name} must be a number >= 0")
        pairs.append((name, value))
    if not pairs or sum(w for _, w in pairs) <= 0:
        raise ConfigError("--shapes needs at least one shape with a weight above 0")
    return tuple(pairs)


def jsonl_lines(samples: Iterable[Sample]) -> list[str]:
    """One canonical JSON line per sample (sorted keys, UTF-8 kept, newline-terminated)."""
    return [
        json.dumps(s.to_dict(), ensure_ascii=False, sort_keys=True, allow_nan=False) + "\n"
        for s in samples
    ]


def dataset_hash(samples: Iterable[Sample]) -> str:
    """The sha256 of the samples' JSONL (what :func:`write_jsonl` would write)."""
    digest = hashlib.sha256()
    for line in jsonl_lines(samples):
        digest.update(line.encode("utf-8"))
    return digest.hexdigest()


def write_jsonl(samples: Iterable[Sample], path: str | Path) -> str:
    """Write the samples as JSONL to ``path`` (parents created); return the file's sha256."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = "".join(jsonl_lines(samples)).encode("utf-8")
    target.write_bytes(data)
    return hashlib.sha256(data).hexdigest()


@dataclass(frozen=True)
class Record:
    """A sample read back from JSONL: what :func:`encode_sample` needs (the chat it starts from
    and the assistant's segments with their loss mask), plus its id."""

    id: str
    system: str
    user: str
    segments: tuple[Segment, ...]

    def messages(self) -> list[dict[str, str]]:
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]


def read_jsonl(path: str | Path) -> list[Record]:
    """The records of a JSONL file :func:`write_jsonl` wrote (``ConfigError`` if malformed)."""
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError(f"cannot read {source}: {exc.strerror or exc}") from None
    records: list[Record] = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            messages = {m["role"]: m["content"] for m in row["messages"]}
            segments = tuple(Segment(str(g["text"]), bool(g["train"])) for g in row["segments"])
            records.append(
                Record(str(row.get("id", number)), messages["system"], messages["user"], segments)
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(
                f"{source}:{number}: not a fine-tuning sample ({type(exc).__name__}: {exc}); "
                "write the data with `counterpoint finetune data`"
            ) from None
    return records


def summarise(samples: Sequence[Sample]) -> dict[str, Any]:
    """Counts by kind and shape, calls per sample, distinct questions and templates."""
    kinds: dict[str, int] = {}
    shapes: dict[str, int] = {}
    schedules: dict[str, int] = {}
    for s in samples:
        kinds[s.kind] = kinds.get(s.kind, 0) + 1
        shapes[s.shape] = shapes.get(s.shape, 0) + 1
        schedules[s.schedule] = schedules.get(s.schedule, 0) + 1
    calls = [len(s.calls) for s in samples]
    return {
        "samples": len(samples),
        "kinds": dict(sorted(kinds.items())),
        "shapes": dict(sorted(shapes.items())),
        "schedules": dict(sorted(schedules.items())),
        "calls": sum(calls),
        "max_calls": max(calls, default=0),
        "functions_called": len({c.name for s in samples for c in s.calls}),
        "distinct_questions": len({s.user for s in samples}),
        "distinct_templates": len({t for s in samples for t in s.templates}),
        "traps": sum(s.generated.count("[TRAP]") for s in samples),
    }


# -- tokens --------------------------------------------------------------------------------------


class Tokenizer(Protocol):
    """What :func:`encode_sample` needs of a Hugging Face tokenizer."""

    eos_token_id: Any

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> Any: ...

    def __call__(self, text: str, **kwargs: Any) -> Any: ...


class Encodable(Protocol):
    """What :func:`encode_sample` reads: a :class:`Sample` or a :class:`Record`."""

    @property
    def segments(self) -> Sequence[Segment]: ...

    def messages(self) -> list[dict[str, str]]: ...


@dataclass(frozen=True)
class Encoded:
    """A sample as token ids with its labels (``IGNORE_INDEX`` where the loss skips)."""

    input_ids: list[int]
    labels: list[int]
    decisions: tuple[int, ...] = ()
    """Positions (in ``input_ids``) of the model's decisions: the first token of each
    model-written segment that is not only whitespace (open a call, wait with a trap, or
    answer), where the tokenizer gives offsets. Training may weigh them more."""

    @property
    def trained_tokens(self) -> int:
        return sum(1 for label in self.labels if label != IGNORE_INDEX)


def _encode(tokenizer: Tokenizer, text: str, *, special: bool) -> list[int]:
    out = tokenizer(text, add_special_tokens=False, split_special_tokens=not special)
    return list(out["input_ids"])


def _runs(sample: Encodable) -> list[tuple[str, bool, list[int]]]:
    """The assistant's side as the runtime encodes it: what the model writes between two
    interrupts is one stream of tokens; each injection is encoded on its own. Each run comes
    with the character offsets where its model-written segments (not only whitespace) start."""
    runs: list[tuple[str, bool, list[int]]] = []
    for segment in sample.segments:
        merge = segment.train and runs and runs[-1][1]
        text, starts = (runs[-1][0], runs[-1][2]) if merge else ("", [])
        if segment.train and segment.text.strip():
            starts.append(len(text))
        if merge:
            runs[-1] = (text + segment.text, True, starts)
        else:
            runs.append((segment.text, segment.train, starts))
    return runs


def _encode_run(
    tokenizer: Tokenizer, text: str, starts: Sequence[int]
) -> tuple[list[int], list[int]]:
    """A model-written run's token ids, and the index of the token holding each character
    offset in ``starts`` (none where the tokenizer gives no offsets). One tokenizer call."""
    out = tokenizer(
        text,
        add_special_tokens=False,
        split_special_tokens=True,
        return_offsets_mapping=bool(starts),
    )
    ids = list(out["input_ids"])
    offsets = (out.get("offset_mapping") if starts and hasattr(out, "get") else None) or []
    found: list[int] = []
    for char in starts if offsets else ():
        index = next((i for i, (_, end) in enumerate(offsets) if end > char), None)
        if index is not None and index not in found:
            found.append(index)
    return ids, found


def encode_sample(sample: Encodable, tokenizer: Tokenizer) -> Encoded:
    """``input_ids`` and ``labels`` for one sample, built as the runtime builds its context."""
    prompt = tokenizer.apply_chat_template(
        sample.messages(), tokenize=False, add_generation_prompt=True
    )
    ids = _encode(tokenizer, str(prompt), special=True)
    labels = [IGNORE_INDEX] * len(ids)
    decisions: list[int] = []
    for text, train, starts in _runs(sample):
        if train:
            piece, at = _encode_run(tokenizer, text, starts)
            decisions.extend(len(ids) + i for i in at)
        else:
            piece = _encode(tokenizer, text, special=False)
        ids.extend(piece)
        labels.extend(piece if train else [IGNORE_INDEX] * len(piece))
    eos = tokenizer.eos_token_id
    if isinstance(eos, int):
        ids.append(eos)
        labels.append(eos)
    return Encoded(ids, labels, tuple(d for d in decisions if d < len(ids)))
