"""The dataset API: determinism, JSONL and its hash, the loss mask, and the data command."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from counterpoint.errors import ConfigError
from counterpoint.finetune import library
from counterpoint.finetune.commands import library_summary, prepare_data
from counterpoint.finetune.data import (
    IGNORE_INDEX,
    build_dataset,
    dataset_hash,
    encode_sample,
    jsonl_lines,
    parse_shapes,
    summarise,
    write_jsonl,
)
from counterpoint.finetune.traces import Sample

_MODEL_DIR = (
    Path(os.environ.get("COUNTERPOINT_MODELS", Path.home() / ".cache" / "counterpoint" / "models"))
    / "SmolLM2-135M-Instruct.Q4_1"
)


def test_deterministic_for_a_seed() -> None:
    a, b = build_dataset(30, seed=11), build_dataset(30, seed=11)
    assert dataset_hash(a) == dataset_hash(b)
    assert dataset_hash(build_dataset(30, seed=12)) != dataset_hash(a)
    assert dataset_hash(build_dataset(30, seed=11, split="held_out")) != dataset_hash(a)
    assert (
        jsonl_lines(build_dataset(10, seed=11)) == jsonl_lines(a)[:10]
    )  # extends, never reshuffles


def test_bad_arguments_say_what_to_do() -> None:
    with pytest.raises(ConfigError, match="unknown split"):
        build_dataset(3, split="dev")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=">= 0"):
        build_dataset(-1)


def test_jsonl_round_trip_and_hash(tmp_path: Path, train_samples: list[Sample]) -> None:
    samples = train_samples[:50]
    path = tmp_path / "out" / "train.jsonl"
    digest = write_jsonl(samples, path)
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() == dataset_hash(samples)
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 50
    for row, s in zip(rows, samples, strict=True):
        assert [m["role"] for m in row["messages"]] == ["system", "user", "assistant"]
        assert row["messages"][2]["content"] == "".join(seg["text"] for seg in row["segments"])
        assert row["messages"][0]["content"] == s.system
        assert [c["name"] for c in row["calls"]] == [c.name for c in s.calls]
        assert any(seg["train"] for seg in row["segments"])


class _CharTokenizer:
    """A stand-in tokenizer: one token per character, a ChatML-like template, eos 0."""

    eos_token_id = 0

    def apply_chat_template(self, conversation: Any, **kwargs: Any) -> str:
        assert kwargs == {"tokenize": False, "add_generation_prompt": True}
        turns = "".join(f"<{m['role']}>{m['content']}</>" for m in conversation)
        return turns + "<assistant>"

    def __call__(self, text: str, **kwargs: Any) -> dict[str, list[int]]:
        return {"input_ids": [ord(ch) for ch in text]}


def test_loss_mask_trains_only_what_the_model_writes(train_samples: list[Sample]) -> None:
    tok = _CharTokenizer()
    for s in train_samples[:40]:
        enc = encode_sample(s, tok)
        assert len(enc.input_ids) == len(enc.labels)
        trained = "".join(chr(t) for t in enc.labels if t not in (IGNORE_INDEX, 0))
        assert trained == s.generated
        assert enc.labels[-1] == enc.input_ids[-1] == 0  # the end of turn is learned
        prompt = tok.apply_chat_template(s.messages(), tokenize=False, add_generation_prompt=True)
        assert all(label == IGNORE_INDEX for label in enc.labels[: len(prompt)])
        context = "".join(chr(t) for t in enc.input_ids[len(prompt) : -1])
        assert context == s.transcript
        injected = sum(len(seg.text) for seg in s.segments if not seg.train)
        assert len(enc.labels) - enc.trained_tokens == len(prompt) + injected


@pytest.mark.skipif(not (_MODEL_DIR / "tokenizer.json").exists(), reason="no converted model")
def test_real_tokenizer_mask(train_samples: list[Sample]) -> None:
    transformers = pytest.importorskip("transformers")
    tok = transformers.PreTrainedTokenizerFast.from_pretrained(str(_MODEL_DIR))
    for s in train_samples[:10]:
        enc = encode_sample(s, tok)
        trained = [t for t in enc.labels if t != IGNORE_INDEX]
        assert trained[-1] == tok.eos_token_id
        assert tok.decode(trained[:-1]) == s.generated
        assert "[INTR]" not in tok.decode(trained)
        # the decisions: the first token of each segment the model writes, on a trained label
        written = [seg.text for seg in s.segments if seg.train and seg.text.strip()]
        assert len(enc.decisions) == len(written)
        for d, text in zip(enc.decisions, written, strict=True):
            assert enc.labels[d] == enc.input_ids[d]
            first = tok.decode([enc.input_ids[d]]).strip()
            assert first and text.strip().startswith(first), (s.id, first, text)


def test_summary_and_prepare_data(tmp_path: Path) -> None:
    info = library_summary()
    assert info["functions"] == len(library.entries()) >= 150
    assert info["held_out_functions"] / info["functions"] >= 0.15
    manifest = prepare_data(tmp_path, n=12, seed=2, held_out=5)
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    for split, count in (("train", 12), ("held_out", 5)):
        entry = manifest["files"][split]
        data = Path(entry["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        assert entry["samples"] == count == len(data.splitlines())
    again = summarise(build_dataset(12, seed=2))
    assert {k: manifest["files"]["train"][k] for k in again} == again


def test_shapes_weigh_the_training_mix_and_say_what_is_wrong(tmp_path: Path) -> None:
    assert parse_shapes("single=3, no_call=1,chain") == (
        ("single", 3.0),
        ("no_call", 1.0),
        ("chain", 1.0),
    )
    only = build_dataset(30, seed=4, shapes=parse_shapes("no_call=1"))
    assert {s.shape for s in only} == {"no_call"}
    mixed = summarise(build_dataset(60, seed=4, shapes=parse_shapes("single=1,no_call=1")))
    assert set(mixed["shapes"]) <= {"single", "no_call"} and len(mixed["shapes"]) == 2
    for bad, says in (
        ("singles=1", "unknown shape 'singles'"),
        ("single=x", "needs a number"),
        ("single=-1", ">= 0"),
        ("single=0", "at least one shape"),
        ("", "at least one shape"),
    ):
        with pytest.raises(ConfigError, match=says):
            parse_shapes(bad)
    manifest = prepare_data(tmp_path, n=8, seed=2, held_out=4, shapes=parse_shapes("single=1"))
    assert manifest["shapes"] == {"single": 1.0}
    assert set(manifest["files"]["train"]["shapes"]) == {"single"}
    default_held_out = prepare_data(tmp_path / "d", n=8, seed=2, held_out=4)["files"]["held_out"]
    assert manifest["files"]["held_out"]["sha256"] == default_held_out["sha256"]


def test_module_entry_point(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from counterpoint.finetune.__main__ import main

    assert main(["data", "--out", str(tmp_path), "-n", "4", "--held-out", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["files"]["train"]["samples"] == 4 and (tmp_path / "train.jsonl").exists()
    assert main(["data", "--out", str(tmp_path), "-n", "-3"]) == 2
    assert ">= 0" in capsys.readouterr().err


def test_same_data_in_another_process() -> None:
    """Nothing depends on the process (hash randomisation, set order): same seed, same bytes."""
    import subprocess
    import sys

    code = (
        "from counterpoint.finetune.data import build_dataset, dataset_hash;"
        "print(dataset_hash(build_dataset(40, seed=5)))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    assert out.stdout.strip() == dataset_hash(build_dataset(40, seed=5))
