"""LoRA training for CML on CPU: ``train(data, TrainConfig(...), out_dir)``.

A plain, seeded PyTorch loop over peft's LoRA (no ``Trainer``): each sample is encoded with
:func:`~counterpoint.finetune.data.encode_sample` (the loss mask keeps the prompt and every
injected interrupt out of the loss), batches are right-padded (labels ``-100`` on padding), and
the loss is the mean over the batch's trained tokens. Right padding under a causal mask never
changes what a real token attends to, so no attention mask is passed and PyTorch's fused causal
attention is used; the vocabulary projection runs only on the positions the loss reads.

The output folder holds the adapter (``adapter_model.safetensors`` and ``adapter_config.json``,
written by peft's ``save_pretrained``), ``recipe.json`` (the command, the config, the seed, the
data's sha256, the sample and step counts, the wall time, the losses) and ``loss.png``.

Everything that would make a run fail late is checked first, each as one
:class:`~counterpoint.errors.ConfigError` line that says what to change: the config's values, an
empty data set, a memory estimate above the RAM available, and samples longer than ``max_len``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from counterpoint.errors import ConfigError
from counterpoint.finetune.data import (
    IGNORE_INDEX,
    Encodable,
    Encoded,
    dataset_hash,
    encode_sample,
    read_jsonl,
)
from counterpoint.finetune.traces import Sample

__all__ = [
    "DEFAULT_TARGET_MODULES",
    "MemoryEstimate",
    "StepLog",
    "TrainConfig",
    "TrainResult",
    "available_memory",
    "estimate_memory",
    "train",
]

_log = logging.getLogger(__name__)

DEFAULT_TARGET_MODULES: tuple[str, ...] = (
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
)
"""Every linear projection of a Llama block (attention and MLP); the vocabulary head is not."""

ADAPTER_FILE = "adapter_model.safetensors"
RECIPE_FILE = "recipe.json"
PLOT_FILE = "loss.png"
MEMORY_HEADROOM = 0.85
"""A run may plan to use at most this share of the memory available when it starts."""


@dataclass(frozen=True)
class TrainConfig:
    """The LoRA recipe. ``max_steps`` (optimizer steps) wins over ``epochs`` when set.

    ``too_long`` says what to do with a sample longer than ``max_len``: ``"error"`` stops before
    training (the default: silently truncating would cut off the answer the model must learn),
    ``"skip"`` leaves it out and counts it in the recipe.
    """

    rank: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    lr: float = 2e-4
    weight_decay: float = 0.0
    epochs: float = 1.0
    max_steps: int | None = None
    batch_size: int = 1
    grad_accum: int = 2
    max_len: int = 2048
    seed: int = 0
    warmup_steps: int = 0
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    max_grad_norm: float = 1.0
    log_every: int = 1
    too_long: Literal["error", "skip"] = "error"
    gradient_checkpointing: bool = False
    decision_weight: float = 1.0
    """Loss weight of the model's decision tokens (the first token of each segment it writes:
    open a call, wait, or answer) against 1 for every other trained token. Most trained tokens
    are copied (names, values, results); the choice to call or to answer is one token a turn."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "target_modules", tuple(self.target_modules))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first value that cannot be used."""

        def need(ok: bool, message: str) -> None:
            if not ok:
                raise ConfigError(message)

        def is_int(value: object) -> bool:
            return isinstance(value, int) and not isinstance(value, bool)

        need(is_int(self.rank) and self.rank >= 1, f"rank must be an integer >= 1, got {self.rank}")
        need(
            is_int(self.alpha) and self.alpha >= 1,
            f"alpha must be an integer >= 1, got {self.alpha}",
        )
        need(0.0 <= self.dropout < 1.0, f"dropout must be in [0, 1), got {self.dropout}")
        need(
            len(self.target_modules) > 0 and all(isinstance(m, str) for m in self.target_modules),
            "target_modules must name at least one module (e.g. q_proj)",
        )
        need(0.0 < self.lr < 1.0, f"lr must be in (0, 1), got {self.lr} (try 2e-4)")
        need(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        need(
            self.max_steps is not None or self.epochs > 0,
            f"epochs must be > 0, got {self.epochs} (or set max_steps)",
        )
        need(
            self.max_steps is None or (is_int(self.max_steps) and self.max_steps >= 1),
            f"max_steps must be an integer >= 1 or None, got {self.max_steps}",
        )
        need(
            is_int(self.batch_size) and self.batch_size >= 1,
            f"batch_size must be an integer >= 1, got {self.batch_size}",
        )
        need(
            is_int(self.grad_accum) and self.grad_accum >= 1,
            f"grad_accum must be an integer >= 1, got {self.grad_accum}",
        )
        need(
            is_int(self.max_len) and self.max_len >= 16,
            f"max_len must be an integer >= 16 tokens, got {self.max_len}",
        )
        need(is_int(self.seed), f"seed must be an integer, got {self.seed!r}")
        need(
            is_int(self.warmup_steps) and self.warmup_steps >= 0,
            f"warmup_steps must be an integer >= 0, got {self.warmup_steps}",
        )
        need(
            self.schedule in ("cosine", "linear", "constant"),
            f"schedule must be cosine, linear or constant, got {self.schedule!r}",
        )
        need(self.max_grad_norm > 0, f"max_grad_norm must be > 0, got {self.max_grad_norm}")
        need(
            isinstance(self.decision_weight, int | float)
            and math.isfinite(self.decision_weight)
            and self.decision_weight >= 1,
            f"decision_weight must be a number >= 1, got {self.decision_weight!r}",
        )
        need(
            is_int(self.log_every) and self.log_every >= 1,
            f"log_every must be an integer >= 1, got {self.log_every}",
        )
        need(
            self.too_long in ("error", "skip"),
            f"too_long must be 'error' or 'skip', got {self.too_long!r}",
        )

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["target_modules"] = list(self.target_modules)
        return out


@dataclass(frozen=True)
class StepLog:
    """One optimizer step, as ``on_step`` receives it."""

    step: int
    total_steps: int
    loss: float
    lr: float
    tokens: int
    """Tokens (padding excluded) in this step's batches."""
    trained_tokens: int
    elapsed_s: float


@dataclass(frozen=True)
class MemoryEstimate:
    """What a run will hold in RAM at its peak, in bytes (an estimate, on the safe side)."""

    weights: int
    adapter: int
    activations: int
    logits: int

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.activations + self.logits


@dataclass(frozen=True)
class TrainResult:
    """What :func:`train` wrote and measured."""

    out_dir: Path
    adapter: Path
    recipe: Path
    plot: Path | None
    steps: int
    losses: tuple[float, ...]
    final_loss: float
    wall_s: float
    tokens_per_s: float
    recipe_data: dict[str, Any] = field(repr=False)


# -- memory -------------------------------------------------------------------------------------


def available_memory() -> int | None:
    """Bytes of RAM available now (psutil if installed, else ``/proc/meminfo``; ``None`` if
    neither can tell)."""
    try:
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().available)
    except Exception:  # not installed, or no answer on this platform
        pass
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _config_int(config: Any, *names: str, default: int) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    return default


def estimate_memory(
    model_config: Any, n_params: int, config: TrainConfig, *, trainable: int = 0
) -> MemoryEstimate:
    """The peak RAM of a training step of ``config.batch_size × config.max_len`` tokens.

    fp32 weights, the adapter with its gradient and AdamW's two moments, the activations autograd
    keeps for every layer (``20·hidden + 8·intermediate`` floats per token and layer, LoRA's
    dropout copies and fp32 norms included, plus half an fp32 ``heads × len²`` attention map per
    sequence and layer), and the vocabulary logits of the trained positions (counted as half of
    the tokens, three copies: logits, softmax, gradient). Calibrated on SmolLM2-135M (one
    forward and backward, peak RSS over the loaded model): 1.4 GiB at 1 × 512 tokens, 5.1 GiB
    at 1 × 1536; this formula gives 1.7 and 5.8. With gradient checkpointing one layer's
    activations are kept plus each layer's input.
    """
    hidden = _config_int(model_config, "hidden_size", "n_embd", default=1024)
    inter = _config_int(model_config, "intermediate_size", "n_inner", default=4 * hidden)
    layers = _config_int(model_config, "num_hidden_layers", "n_layer", default=24)
    vocab = _config_int(model_config, "vocab_size", default=50_000)
    heads = _config_int(model_config, "num_attention_heads", "n_head", default=16)
    tokens = config.batch_size * config.max_len
    per_layer = (20 * hidden + 8 * inter) * 4
    attention = config.batch_size * heads * config.max_len**2 * 2
    if config.gradient_checkpointing:
        activations = tokens * (per_layer + layers * hidden * 4) + attention
    else:
        activations = layers * (tokens * per_layer + attention)
    logits = (tokens // 2) * vocab * 4 * 3
    if trainable <= 0:  # LoRA on every projection: r·(in+out) per target and layer, roughly
        trainable = layers * len(config.target_modules) * config.rank * (hidden + inter)
    return MemoryEstimate(n_params * 4, trainable * 4 * 4, activations, logits)


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB"


def _check_memory(estimate: MemoryEstimate, config: TrainConfig) -> None:
    free = available_memory()
    if free is None:
        _log.warning("cannot tell the RAM available; the memory check is skipped")
        return
    if estimate.total <= free * MEMORY_HEADROOM:
        return
    per_sequence = (estimate.activations + estimate.logits) / max(1, config.batch_size)
    room = free * MEMORY_HEADROOM - estimate.weights - estimate.adapter
    fits = int(room // per_sequence) if per_sequence > 0 else 0
    advice = (
        f"use --batch-size {fits} or less (with --grad-accum to keep the effective batch)"
        if fits >= 1
        else "lower --max-len or turn on gradient checkpointing"
    )
    raise ConfigError(
        f"batch {config.batch_size} x max_len {config.max_len} needs about "
        f"{_gib(estimate.total)} of RAM but {_gib(free)} is available: {advice}"
    )


# -- data ---------------------------------------------------------------------------------------

DataLike = Sequence[Encodable] | str | os.PathLike[str] | Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class _Data:
    records: list[Encodable]
    files: list[dict[str, Any]]
    sha256: str
    manifest: dict[str, Any] | None


def _sha256_file(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _resolve_paths(data: str | os.PathLike[str]) -> tuple[list[Path], dict[str, Any] | None]:
    path = Path(data)
    if path.is_dir():
        manifest_path = path / "manifest.json"
        manifest: dict[str, Any] | None = None
        if manifest_path.is_file():
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except ValueError:
                raise ConfigError(
                    f"{manifest_path} is not valid JSON: rewrite it with `counterpoint finetune "
                    f"data --out {path}`"
                ) from None
        train_file = path / "train.jsonl"
        if not train_file.is_file():
            raise ConfigError(
                f"{path} has no train.jsonl: write it with `counterpoint finetune data --out "
                f"{path}`, or pass the JSONL file itself"
            )
        return [train_file], manifest
    if not path.is_file():
        raise ConfigError(
            f"no training data at {path}: write it with `counterpoint finetune data --out DIR`"
        )
    return [path], None


def _load_data(data: DataLike) -> _Data:
    if isinstance(data, str | os.PathLike):
        paths, manifest = _resolve_paths(data)
    elif data and all(isinstance(d, str | os.PathLike) for d in data):
        paths, manifest = [], None
        for item in data:
            found, found_manifest = _resolve_paths(item)  # type: ignore[arg-type]
            paths.extend(found)
            manifest = manifest or found_manifest
    else:
        records: list[Encodable] = list(data)  # type: ignore[arg-type]
        return _Data(records, [], _records_hash(records), None)
    records_all: list[Encodable] = []
    files: list[dict[str, Any]] = []
    for path in paths:
        rows = read_jsonl(path)
        records_all.extend(rows)
        files.append({"path": str(path), "sha256": _sha256_file(path), "samples": len(rows)})
    digest = files[0]["sha256"] if len(files) == 1 else _combined([f["sha256"] for f in files])
    return _Data(records_all, files, digest, manifest)


def _records_hash(records: Sequence[Encodable]) -> str:
    """The JSONL hash for samples (as ``write_jsonl`` would write them), else one over each
    record's chat and segments."""
    samples = [r for r in records if isinstance(r, Sample)]
    if len(samples) == len(records):
        return dataset_hash(samples)
    import hashlib

    digest = hashlib.sha256()
    for r in records:
        row = {"messages": r.messages(), "segments": [[g.text, g.train] for g in r.segments]}
        digest.update((json.dumps(row, sort_keys=True, ensure_ascii=False) + "\n").encode())
    return digest.hexdigest()


def _combined(digests: Sequence[str]) -> str:
    import hashlib

    return hashlib.sha256("\n".join(digests).encode()).hexdigest()


# -- batches ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Batch:
    input_ids: torch.Tensor
    labels: torch.Tensor
    tokens: int
    trained: int
    weights: torch.Tensor | None = None
    """Per-position loss weights (None: all 1)."""
    weight_sum: float = 0.0
    """The weights summed over the trained positions (``trained`` when all are 1)."""


def _collate(items: Sequence[Encoded], pad_id: int, decision_weight: float = 1.0) -> _Batch:
    width = max(len(e.input_ids) for e in items)
    ids = torch.full((len(items), width), pad_id, dtype=torch.long)
    labels = torch.full((len(items), width), IGNORE_INDEX, dtype=torch.long)
    weights = torch.ones((len(items), width)) if decision_weight != 1 else None
    for row, e in enumerate(items):
        ids[row, : len(e.input_ids)] = torch.tensor(e.input_ids, dtype=torch.long)
        labels[row, : len(e.labels)] = torch.tensor(e.labels, dtype=torch.long)
        if weights is not None:
            for position in e.decisions:
                if e.labels[position] != IGNORE_INDEX:
                    weights[row, position] = decision_weight
    trained = sum(e.trained_tokens for e in items)
    weight_sum = float(weights[labels != IGNORE_INDEX].sum()) if weights is not None else trained
    return _Batch(ids, labels, sum(len(e.input_ids) for e in items), trained, weights, weight_sum)


def _batches(encoded: Sequence[Encoded], size: int, rng: random.Random) -> list[list[Encoded]]:
    order = list(range(len(encoded)))
    rng.shuffle(order)
    return [[encoded[i] for i in order[k : k + size]] for k in range(0, len(order), size)]


def _lr_factor(config: TrainConfig, total: int) -> Callable[[int], float]:
    warm = config.warmup_steps

    def factor(step: int) -> float:  # step: optimizer steps taken so far
        if warm and step < warm:
            return (step + 1) / (warm + 1)
        if config.schedule == "constant":
            return 1.0
        progress = (step - warm) / max(1, total - warm)
        progress = min(1.0, max(0.0, progress))
        if config.schedule == "linear":
            return max(0.0, 1.0 - progress)
        return 0.5 * (1.0 + math.cos(math.pi * progress))

    return factor


def _loss_sum(model: Any, batch: _Batch) -> torch.Tensor:
    """The summed next-token loss over the batch's trained positions (weighted, if it has
    weights)."""
    decoder = model.get_base_model().get_decoder()
    head = model.get_base_model().get_output_embeddings()
    hidden = decoder(input_ids=batch.input_ids, use_cache=False).last_hidden_state
    targets = batch.labels[:, 1:]
    keep = targets != IGNORE_INDEX
    logits = head(hidden[:, :-1][keep]).float()
    if batch.weights is None:
        return torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum")
    losses = torch.nn.functional.cross_entropy(logits, targets[keep], reduction="none")
    return (losses * batch.weights[:, 1:][keep]).sum()


# -- the run ------------------------------------------------------------------------------------


def _base_objects(base: Any) -> tuple[Any, Any, str]:
    if callable(base) and not hasattr(base, "hf_model") and not hasattr(base, "parameters"):
        base = base()
    if base is None:
        from counterpoint.runtime.backends.transformers import TransformersModel

        # The raw weights: an adapter is a delta on the model it is loaded onto (--adapter DIR
        # loads the raw model), so it must be trained on that model, not on one with the shipped
        # adapter merged in. Continued training starts from an adapter: ``init``.
        base = TransformersModel.load(dtype="float32", adapter="none")
    if isinstance(base, tuple):
        hf_model, tokenizer = base
        name = str(getattr(getattr(hf_model, "config", None), "_name_or_path", "") or "model")
    else:
        hf_model, tokenizer = base.hf_model, base.tokenizer
        name = str(getattr(base, "name", "model"))
    dtype = getattr(hf_model, "dtype", torch.float32)
    if dtype != torch.float32:
        raise ConfigError(
            f"the base model is {str(dtype).removeprefix('torch.')}: train in float32 "
            "(TransformersModel.load(dtype='float32')); bf16 is slow and unstable on CPU"
        )
    return hf_model, tokenizer, name


@dataclass(frozen=True)
class _Init:
    """An adapter that training continues from."""

    folder: Path
    rank: int
    alpha: int
    target_modules: tuple[str, ...]
    record: dict[str, Any]


def _init_adapter(init: str | os.PathLike[str]) -> _Init:
    """Check the adapter training starts from; its LoRA shape and what the recipe records."""
    from counterpoint.runtime.backends._adapter import (
        ADAPTER_CONFIG,
        ADAPTER_WEIGHTS,
        check_adapter,
        resolve_adapter,
    )

    where = resolve_adapter(init, embedded=True)
    if where is None:
        raise ConfigError(
            f"--init {init!r} names no adapter: give an adapter folder, or 'default' for the "
            "shipped one (leave --init out to train a fresh adapter)"
        )
    folder = check_adapter(where)
    config = json.loads((folder / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    targets = config.get("target_modules") or ()
    if isinstance(targets, str):
        targets = (targets,)
    rank = int(config.get("r", 0))
    if rank < 1 or not targets:
        raise ConfigError(
            f"adapter {folder}: {ADAPTER_CONFIG} gives no LoRA rank or target modules; train a "
            "fresh adapter instead (leave --init out)"
        )
    record: dict[str, Any] = {
        "path": str(folder),
        "sha256": _sha256_file(folder / ADAPTER_WEIGHTS),
    }
    recipe = folder / RECIPE_FILE
    if recipe.is_file():
        try:
            earlier = json.loads(recipe.read_text(encoding="utf-8"))
        except ValueError:
            earlier = None
        if isinstance(earlier, dict):  # how the starting point itself was made
            keys = ("data_command", "command", "seed", "steps", "wall_s")
            record["recipe"] = {k: earlier[k] for k in keys if k in earlier}
            record["recipe"]["data_sha256"] = (earlier.get("data") or {}).get("sha256")
            if "init_adapter" in earlier:  # and where that one started: the whole lineage
                record["recipe"]["init_adapter"] = earlier["init_adapter"]
    return _Init(
        folder=folder,
        rank=rank,
        alpha=int(config.get("lora_alpha", 2 * rank)),
        target_modules=tuple(sorted(str(t) for t in targets)),
        record=record,
    )


def _load_trainable(hf_model: Any, folder: Path) -> Any:
    """``hf_model`` with the LoRA adapter at ``folder`` on top, its weights trainable."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(hf_model, str(folder), is_trainable=True)
    except Exception as exc:  # a shape or module mismatch: the adapter is for another model
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(
            f"adapter {folder} does not fit the base model ({type(exc).__name__}: "
            f"{first[:200]}): continue from an adapter trained on this model, or leave --init out"
        ) from None


def _encode_all(
    records: Sequence[Encodable], tokenizer: Any, config: TrainConfig
) -> tuple[list[Encoded], int, int]:
    encoded = [encode_sample(r, tokenizer) for r in records]
    longest = max(len(e.input_ids) for e in encoded)
    kept = [e for e in encoded if len(e.input_ids) <= config.max_len and e.trained_tokens > 0]
    too_long = sum(1 for e in encoded if len(e.input_ids) > config.max_len)
    if too_long and config.too_long == "error":
        raise ConfigError(
            f"{too_long} of {len(encoded)} samples are longer than max_len={config.max_len} "
            f"tokens (the longest has {longest}): raise --max-len to {longest}, or skip them "
            "with --skip-long"
        )
    if not kept:
        raise ConfigError(
            f"no sample fits in max_len={config.max_len} tokens (the longest has {longest}, "
            f"the shortest {min(len(e.input_ids) for e in encoded)}): raise --max-len"
        )
    return kept, too_long, longest


def _total_steps(config: TrainConfig, n_batches: int) -> int:
    if config.max_steps is not None:
        return config.max_steps
    return max(1, math.ceil(config.epochs * n_batches / config.grad_accum))


def train(
    data: DataLike,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike[str] = "adapter",
    *,
    base: Any = None,
    on_step: Callable[[StepLog], None] | None = None,
    command: str | None = None,
    extra: dict[str, Any] | None = None,
    init: str | os.PathLike[str] | None = None,
) -> TrainResult:
    """Train a LoRA adapter on ``data`` and write it with its recipe and loss curve to ``out_dir``.

    ``data`` is a list of samples (:class:`~counterpoint.finetune.traces.Sample` or
    :class:`~counterpoint.finetune.data.Record`), a JSONL file, a folder written by
    ``counterpoint finetune data`` (its ``train.jsonl``; the manifest's hash goes in the recipe),
    or a list of files and folders. ``base`` is a loaded ``TransformersModel``, a
    ``(hf_model, tokenizer)`` pair, a function returning one (called once the data has been
    checked), or ``None`` for the embedded model in float32. The base model
    is left as it was (the LoRA layers are removed after training). ``on_step`` is called after
    every optimizer step. ``command`` is recorded in the recipe (the CLI passes its own line);
    ``extra`` adds keys to it.

    ``init`` continues training from an adapter folder (``"default"``: the shipped one) instead
    of a fresh LoRA: its rank, alpha and target modules replace the config's, and the adapter
    written is again a whole delta on the base model. ``base`` must be the model that adapter
    was trained on (the raw one, as ``None`` loads it).
    """
    config = config or TrainConfig()
    config.validate()
    started = time.perf_counter()
    start_from = _init_adapter(init) if init is not None else None
    if start_from is not None:
        config = replace(
            config,
            rank=start_from.rank,
            alpha=start_from.alpha,
            target_modules=start_from.target_modules,
        )
    loaded = _load_data(data)
    if not loaded.records:
        raise ConfigError(
            "no training samples: generate some with `counterpoint finetune data --out DIR -n N`"
        )
    hf_model, tokenizer, base_name = _base_objects(base)
    n_params = sum(p.numel() for p in hf_model.parameters())
    _check_memory(estimate_memory(hf_model.config, n_params, config), config)
    if config.batch_size > len(loaded.records):
        raise ConfigError(
            f"batch size {config.batch_size} is larger than the {len(loaded.records)} samples: "
            f"use --batch-size {len(loaded.records)} or less"
        )
    encoded, skipped, longest = _encode_all(loaded.records, tokenizer, config)
    pad_id = tokenizer.pad_token_id
    if not isinstance(pad_id, int):
        pad_id = tokenizer.eos_token_id if isinstance(tokenizer.eos_token_id, int) else 0

    from peft import LoraConfig, get_peft_model

    names = {name.rsplit(".", 1)[-1] for name, _ in hf_model.named_modules()}
    missing = [m for m in config.target_modules if m not in names]
    if missing:
        raise ConfigError(
            f"the base model has no module named {', '.join(missing)}: choose target modules "
            f"among its linear layers (the default is {', '.join(DEFAULT_TARGET_MODULES)})"
        )

    torch.manual_seed(config.seed)
    rng = random.Random(config.seed)
    lora = LoraConfig(
        r=config.rank,
        lora_alpha=config.alpha,
        lora_dropout=config.dropout,
        target_modules=list(config.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    was_training = hf_model.training
    had_peft_config = hasattr(hf_model, "peft_config")
    frozen = {name for name, p in hf_model.named_parameters() if not p.requires_grad}
    with warnings.catch_warnings():  # transformers' own deprecation notice, inside peft
        warnings.filterwarnings("ignore", category=FutureWarning)
        if start_from is None:
            model: Any = get_peft_model(hf_model, lora)
        else:
            model = _load_trainable(hf_model, start_from.folder)
    try:
        return _run(
            model,
            encoded,
            config,
            Path(out_dir),
            pad_id=pad_id,
            on_step=on_step,
            rng=rng,
            started=started,
            meta={
                "command": command,
                "base_model": base_name,
                "data": loaded,
                "skipped": skipped,
                "longest": longest,
                "n_params": n_params,
                "extra": {
                    **({"init_adapter": start_from.record} if start_from is not None else {}),
                    **(extra or {}),
                },
            },
        )
    finally:
        model.unload()  # the base model as it was: LoRA layers out, weights untouched
        if not had_peft_config:
            vars(hf_model).pop("peft_config", None)
        for name, p in hf_model.named_parameters():
            p.requires_grad_(name not in frozen)
        hf_model.train(was_training)


def _run(
    model: Any,
    encoded: list[Encoded],
    config: TrainConfig,
    out: Path,
    *,
    pad_id: int,
    on_step: Callable[[StepLog], None] | None,
    rng: random.Random,
    started: float,
    meta: dict[str, Any],
) -> TrainResult:
    n_batches = math.ceil(len(encoded) / config.batch_size)
    total = _total_steps(config, n_batches)
    params = [p for p in model.parameters() if p.requires_grad]
    trainable = sum(p.numel() for p in params)
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(config, total))
    if config.gradient_checkpointing:
        model.get_base_model().gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )
    model.train()
    losses: list[float] = []
    queue: list[list[Encoded]] = []
    epochs_started = 0
    tokens_total = trained_total = 0
    train_started = time.perf_counter()
    try:
        for step in range(total):
            group: list[_Batch] = []
            for _ in range(config.grad_accum):
                if not queue:
                    queue = _batches(encoded, config.batch_size, rng)
                    epochs_started += 1
                group.append(_collate(queue.pop(0), pad_id, config.decision_weight))
            trained = sum(b.trained for b in group)
            weight_sum = sum(b.weight_sum for b in group)
            loss_value = 0.0
            for batch in group:
                loss = _loss_sum(model, batch) / weight_sum
                loss.backward()  # type: ignore[no-untyped-call]
                loss_value += float(loss.detach())
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
            lr = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            if not math.isfinite(loss_value):
                raise ConfigError(
                    f"the loss became {loss_value} at step {step + 1}: lower --lr (now {config.lr})"
                )
            losses.append(loss_value)
            tokens = sum(b.tokens for b in group)
            tokens_total += tokens
            trained_total += trained
            log = StepLog(
                step + 1, total, loss_value, lr, tokens, trained, time.perf_counter() - started
            )
            if (step + 1) % config.log_every == 0 or step + 1 == total:
                _log.info("step %d/%d loss %.4f lr %.2e", step + 1, total, loss_value, lr)
            if on_step is not None:
                on_step(log)
    finally:
        model.eval()
        if config.gradient_checkpointing:
            model.get_base_model().gradient_checkpointing_disable()
    train_s = time.perf_counter() - train_started

    out.mkdir(parents=True, exist_ok=True)
    model.peft_config["default"].base_model_name_or_path = meta["base_model"]
    model.save_pretrained(str(out), safe_serialization=True, save_embedding_layers=False)
    card = out / "README.md"  # peft's model-card template; the recipe is the real record
    if card.is_file() and "[More Information Needed]" in card.read_text(encoding="utf-8"):
        card.unlink()
    adapter = out / ADAPTER_FILE
    plot = _plot(losses, out / PLOT_FILE)
    wall_s = time.perf_counter() - started
    data: _Data = meta["data"]
    tail = losses[-max(1, len(losses) // 10) :]
    recipe: dict[str, Any] = {
        "command": meta["command"],
        "base_model": meta["base_model"],
        "base_params": meta["n_params"],
        "config": config.to_dict(),
        "seed": config.seed,
        "data": {
            "sha256": data.sha256,
            "files": data.files,
            "manifest_sha256": _manifest_hashes(data.manifest),
            "samples": len(data.records),
            "samples_trained": len(encoded),
            "samples_skipped_too_long": meta["skipped"],
            "longest_tokens": meta["longest"],
        },
        "library": (data.manifest or {}).get("library"),
        "steps": len(losses),
        "epochs": round(len(losses) * config.grad_accum * config.batch_size / len(encoded), 3),
        "trainable_params": trainable,
        "tokens": tokens_total,
        "trained_tokens": trained_total,
        "train_s": round(train_s, 2),
        "wall_s": round(wall_s, 2),
        "tokens_per_s": round(tokens_total / train_s, 1) if train_s > 0 else None,
        "s_per_step": round(train_s / max(1, len(losses)), 3),
        "final_loss": losses[-1],
        "final_loss_mean_last_10pct": sum(tail) / len(tail),
        "losses": [round(v, 5) for v in losses],
        "adapter_bytes": adapter.stat().st_size if adapter.is_file() else None,
        "versions": _versions(),
        "threads": torch.get_num_threads(),
        **meta["extra"],
    }
    recipe_path = out / RECIPE_FILE
    recipe_path.write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return TrainResult(
        out_dir=out,
        adapter=adapter,
        recipe=recipe_path,
        plot=plot,
        steps=len(losses),
        losses=tuple(losses),
        final_loss=losses[-1],
        wall_s=wall_s,
        tokens_per_s=float(recipe["tokens_per_s"] or 0.0),
        recipe_data=recipe,
    )


def _manifest_hashes(manifest: dict[str, Any] | None) -> dict[str, str] | None:
    if not manifest:
        return None
    files = manifest.get("files", {})
    return {k: v.get("sha256", "") for k, v in files.items() if isinstance(v, dict)}


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "peft"):
        try:
            module = __import__(name)
            out[name] = str(getattr(module, "__version__", "?"))
        except ImportError:  # pragma: no cover - both are dependencies
            continue
    return out


def _plot(losses: Sequence[float], path: Path) -> Path | None:
    """The loss per step (and a moving average) as a PNG."""
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return None
    fig, ax = plt.subplots(figsize=(6.4, 3.6), dpi=100)
    steps = list(range(1, len(losses) + 1))
    ax.plot(steps, losses, linewidth=0.8, alpha=0.5, label="loss")
    window = max(1, len(losses) // 20)
    if window > 1:
        smooth = [
            sum(losses[max(0, i - window + 1) : i + 1])
            / len(losses[max(0, i - window + 1) : i + 1])
            for i in range(len(losses))
        ]
        ax.plot(steps, smooth, linewidth=1.6, label=f"mean of {window}")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (trained tokens)")
    ax.set_title("CML LoRA training loss")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
