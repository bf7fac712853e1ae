"""LoRA training: a tiny end-to-end run on the embedded model, and the checks that stop a run
before it spends minutes."""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from counterpoint.errors import ConfigError
from counterpoint.finetune import train as train_module
from counterpoint.finetune.data import Record
from counterpoint.finetune.traces import Segment
from counterpoint.finetune.train import StepLog, TrainConfig, estimate_memory, train
from counterpoint.runtime.backends._adapter import apply_adapter, check_adapter

_CITIES = (("Paris", 17), ("Oslo", 4), ("Lima", 22), ("Hanoi", 31))


def _records() -> list[Record]:
    out = []
    for city, temp in _CITIES:
        out.append(
            Record(
                id=city,
                system="Call get_weather(city) for the weather.",
                user=f"Weather in {city}?",
                segments=(
                    Segment(f'[CALL] c1 [HEAD] get_weather(city="{city}") [END]', True),
                    Segment(f'\n[INTR] c1 [HEAD] {{"temp_c": {temp}}} [END]\n', False),
                    Segment(f"It is {temp} C in {city}.", True),
                ),
            )
        )
    return out


@pytest.fixture(scope="module")
def base() -> Iterator[Any]:
    from counterpoint.runtime.backends.transformers import TransformersModel

    model = TransformersModel.load(dtype="float32", adapter="none")  # train on the raw model
    yield model
    model.close()


def _logits(hf_model: Any, tokenizer: Any) -> torch.Tensor:
    ids = tokenizer("The weather in Paris is", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        out: torch.Tensor = hf_model(input_ids=ids).logits
    return out


@pytest.mark.model
def test_a_tiny_adapter_trains_saves_and_changes_the_model(base: Any, tmp_path: Path) -> None:
    before = _logits(base.hf_model, base.tokenizer)
    steps: list[StepLog] = []
    config = TrainConfig(rank=2, alpha=4, dropout=0.0, lr=3e-3, max_steps=3, batch_size=2,
                         max_len=128, seed=1, schedule="constant")  # fmt: skip
    out = tmp_path / "adapter"
    records = _records()[:2]
    result = train(records, config, out, base=base, on_step=steps.append, command="test")

    assert [s.step for s in steps] == [1, 2, 3] and result.steps == 3
    assert all(math.isfinite(v) for v in result.losses)
    assert result.losses[-1] < result.losses[0]  # the same batch every step: it must go down
    assert (out / "adapter_model.safetensors").is_file()
    assert (out / "adapter_config.json").is_file()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    recipe = json.loads((out / "recipe.json").read_text(encoding="utf-8"))
    assert recipe["command"] == "test" and recipe["seed"] == 1 and recipe["steps"] == 3
    assert recipe["data"]["samples"] == 2 and len(recipe["data"]["sha256"]) == 64
    assert recipe["config"]["rank"] == 2 and recipe["final_loss"] == result.final_loss
    assert recipe["wall_s"] > 0 and recipe["trained_tokens"] > 0

    # the base model is left as it was: no LoRA layers, the same logits
    assert not any("lora" in name for name, _ in base.hf_model.named_modules())
    assert torch.equal(_logits(base.hf_model, base.tokenizer), before)

    assert check_adapter(out) == out
    merged = apply_adapter(copy.deepcopy(base.hf_model), out)
    assert not any("lora" in name for name, _ in merged.named_modules())
    after = _logits(merged, base.tokenizer)
    assert after.shape == before.shape
    assert not torch.allclose(after, before, atol=1e-4)

    # the loader merges it the same way: TransformersModel.load(adapter=...) and the registry
    from counterpoint.runtime.backends.registry import resolve_model
    from counterpoint.runtime.backends.transformers import TransformersModel

    loaded = TransformersModel.load(dtype="float32", adapter=out)
    try:
        assert loaded.name.endswith("+adapter")
        assert torch.allclose(_logits(loaded.hf_model, loaded.tokenizer), after, atol=1e-4)
    finally:
        loaded.close()
    plain = TransformersModel.load(dtype="float32", adapter="none")
    try:
        assert torch.allclose(_logits(plain.hf_model, plain.tokenizer), before, atol=1e-5)
    finally:
        plain.close()
    with pytest.raises(ConfigError, match="adapters apply to local models"):
        resolve_model("openai:m", base_url="http://127.0.0.1:9/v1", adapter=str(out))


def _lora_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / "adapter_model.safetensors"))


@pytest.mark.model
def test_training_continues_from_an_adapter(base: Any, tmp_path: Path) -> None:
    first = tmp_path / "first"
    config = TrainConfig(rank=2, alpha=4, dropout=0.0, lr=3e-3, max_steps=2, batch_size=2,
                         max_len=128, seed=1, schedule="constant")  # fmt: skip
    start = train(_records()[:2], config, first, base=base)
    # another rank asked for: the adapter's own shape wins; a learning rate too small to move it
    again = TrainConfig(rank=4, alpha=8, dropout=0.0, lr=1e-12, max_steps=1, batch_size=2,
                        max_len=128, seed=1, schedule="constant")  # fmt: skip
    second = tmp_path / "second"
    result = train(_records()[:2], again, second, base=base, init=first)

    # it starts where the first run ended: its loss is the first run's, not a fresh LoRA's
    assert result.losses[0] < start.losses[0]
    before, after = _lora_tensors(first), _lora_tensors(second)
    assert before.keys() == after.keys()
    assert all(torch.allclose(before[k], after[k], atol=1e-6) for k in before)
    assert any(bool(before[k].abs().sum() > 0) for k in before if "lora_B" in k)
    recipe = json.loads((second / "recipe.json").read_text(encoding="utf-8"))
    assert recipe["config"]["rank"] == 2 and recipe["config"]["alpha"] == 4
    assert recipe["init_adapter"]["path"] == str(first)
    assert len(recipe["init_adapter"]["sha256"]) == 64
    assert not any("lora" in name for name, _ in base.hf_model.named_modules())

    with pytest.raises(ConfigError, match=r"adapter .*missing: not found.*--adapter none"):
        train(_records()[:2], again, tmp_path / "x", base=base, init=tmp_path / "missing")
    with pytest.raises(ConfigError, match="names no adapter"):
        train(_records()[:2], again, tmp_path / "x", base=base, init="none")


@pytest.mark.model
def test_training_starts_from_the_raw_model() -> None:
    """An adapter is a delta on the model ``--adapter DIR`` loads it onto: the raw one. Training
    on a model with the shipped adapter merged would write a delta that only makes sense on top of
    it (and loads wrongly without it)."""
    hf_model, _, name = train_module._base_objects(None)
    assert name == "SmolLM2-135M-Instruct"
    assert not name.endswith("+cml")
    assert hf_model.dtype == torch.float32


@pytest.mark.model
def test_max_len_too_small_for_the_samples(base: Any, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"longer than max_len=16 .*--max-len"):
        train(_records(), TrainConfig(max_len=16, max_steps=1), tmp_path, base=base)
    assert not (tmp_path / "recipe.json").exists()


@pytest.mark.model
def test_an_absurd_batch_is_refused_for_memory(base: Any, tmp_path: Path) -> None:
    config = TrainConfig(batch_size=100_000, max_len=2048, max_steps=1)
    with pytest.raises(ConfigError, match=r"needs about .* of RAM but .* available.*--batch-size"):
        train(_records(), config, tmp_path, base=base)


def test_memory_check_uses_the_ram_available(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = SimpleNamespace(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                          vocab_size=49152, num_attention_heads=9)  # fmt: skip
    small = estimate_memory(cfg, 134_515_008, TrainConfig(batch_size=1, max_len=512))
    big = estimate_memory(cfg, 134_515_008, TrainConfig(batch_size=4, max_len=1024))
    assert 134_515_008 * 4 < small.total < big.total
    monkeypatch.setattr(train_module, "available_memory", lambda: 2**30)
    with pytest.raises(ConfigError, match=r"--batch-size|--max-len"):
        train_module._check_memory(big, TrainConfig(batch_size=4, max_len=1024))
    monkeypatch.setattr(train_module, "available_memory", lambda: 2**40)
    train_module._check_memory(big, TrainConfig(batch_size=4, max_len=1024))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rank": 0}, "rank"),
        ({"lr": 3.0}, "lr"),
        ({"dropout": 1.0}, "dropout"),
        ({"batch_size": 0}, "batch_size"),
        ({"max_len": 4}, "max_len"),
        ({"max_steps": 0}, "max_steps"),
        ({"epochs": 0, "max_steps": None}, "epochs"),
        ({"target_modules": ()}, "target_modules"),
        ({"too_long": "truncate"}, "too_long"),
        ({"decision_weight": 0.5}, "decision_weight"),
        ({"decision_weight": float("nan")}, "decision_weight"),
    ],
)
def test_bad_configs_say_what_to_change(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        TrainConfig(**kwargs)


def test_no_data_is_refused_before_loading_a_model(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no training samples"):
        train([], TrainConfig(), tmp_path, base=object())
    with pytest.raises(ConfigError, match="finetune data"):
        train(tmp_path / "missing", TrainConfig(), tmp_path, base=object())
    (tmp_path / "bad.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad.jsonl:1: not a fine-tuning sample"):
        train(tmp_path / "bad.jsonl", TrainConfig(), tmp_path, base=object())


class _OffsetTokenizer:
    """One token per character, with offsets (what a fast tokenizer gives)."""

    eos_token_id = 0

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        return "".join(f"<{m['role']}>{m['content']}</>" for m in conversation) + "<assistant>"

    def __call__(self, text: str, **kwargs: Any) -> dict[str, Any]:
        out: dict[str, Any] = {"input_ids": [ord(ch) for ch in text]}
        if kwargs.get("return_offsets_mapping"):
            out["offset_mapping"] = [(i, i + 1) for i in range(len(text))]
        return out


def test_decisions_weigh_more_in_the_loss() -> None:
    """The first token of each segment the model writes (its call, its answer) gets the
    decision weight; the loss is normalised by the summed weights, so weight 1 is the plain
    mean."""
    from counterpoint.finetune.data import encode_sample
    from counterpoint.finetune.train import _collate

    encoded = encode_sample(_records()[0], _OffsetTokenizer())
    marked = "".join(chr(encoded.input_ids[d]) for d in encoded.decisions)
    assert marked == "[I"  # "[CALL] ..." and "It is 17 C in Paris."
    plain = _collate([encoded], 0)
    assert plain.weights is None and plain.weight_sum == plain.trained
    weighted = _collate([encoded], 0, decision_weight=5.0)
    assert weighted.weights is not None
    assert weighted.weight_sum == plain.trained + 2 * 4
    assert sorted(torch.nonzero(weighted.weights[0] == 5.0).flatten().tolist()) == list(
        encoded.decisions
    )
