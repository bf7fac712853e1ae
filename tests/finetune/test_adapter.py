"""check_adapter / apply_adapter: one clear line for a missing or corrupt adapter."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from counterpoint.errors import ConfigError
from counterpoint.runtime.backends._adapter import apply_adapter, check_adapter

CONFIG = {"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["q_proj"]}


def _safetensors(path: Path, names: list[str], *, cut: int = 0) -> None:
    header: dict[str, object] = {}
    offset = 0
    for name in names:
        header[name] = {"dtype": "F32", "shape": [2, 2], "data_offsets": [offset, offset + 16]}
        offset += 16
    blob = json.dumps(header).encode()
    data = struct.pack("<Q", len(blob)) + blob + b"\0" * offset
    path.write_bytes(data[: len(data) - cut] if cut else data)


def _adapter(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(CONFIG), encoding="utf-8")
    _safetensors(folder / "adapter_model.safetensors", ["x.lora_A.weight", "x.lora_B.weight"])
    return folder


def _one_line(exc: pytest.ExceptionInfo[ConfigError], path: Path) -> str:
    text = str(exc.value)
    assert "\n" not in text and str(path) in text and "--adapter none" in text
    assert "counterpoint finetune train" in text
    return text


def test_a_well_formed_adapter_passes(tmp_path: Path) -> None:
    folder = _adapter(tmp_path / "ok")
    assert check_adapter(folder) == folder


def test_missing_adapter(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as exc:
        check_adapter(missing)
    assert "not found" in _one_line(exc, missing)
    with pytest.raises(ConfigError) as exc:
        apply_adapter(object(), missing)  # checked before any model is touched
    _one_line(exc, missing)


@pytest.mark.parametrize(
    ("damage", "said"),
    [
        ("no_weights", "adapter_model.safetensors is missing"),
        ("no_config", "adapter_config.json is missing"),
        ("bad_json", "not valid JSON"),
        ("not_lora", "not LoRA"),
        ("lfs", "Git LFS pointer"),
        ("truncated", "truncated"),
        ("garbage", "not a safetensors file"),
        ("no_lora_tensors", "no LoRA weights"),
    ],
)
def test_corrupt_adapters_give_one_line(tmp_path: Path, damage: str, said: str) -> None:
    folder = _adapter(tmp_path / damage)
    weights, config = folder / "adapter_model.safetensors", folder / "adapter_config.json"
    if damage == "no_weights":
        weights.unlink()
    elif damage == "no_config":
        config.unlink()
    elif damage == "bad_json":
        config.write_text("{oops", encoding="utf-8")
    elif damage == "not_lora":
        config.write_text(json.dumps({**CONFIG, "peft_type": "IA3"}), encoding="utf-8")
    elif damage == "lfs":
        weights.write_text("version https://git-lfs.github.com/spec/v1\noid sha256:ab\n")
    elif damage == "truncated":
        _safetensors(weights, ["x.lora_A.weight"], cut=5)
    elif damage == "garbage":
        weights.write_bytes(b"\xff" * 64)
    elif damage == "no_lora_tensors":
        _safetensors(weights, ["x.weight"])
    with pytest.raises(ConfigError) as exc:
        check_adapter(folder)
    assert said in _one_line(exc, folder)


def test_a_file_is_not_an_adapter_folder(tmp_path: Path) -> None:
    path = tmp_path / "adapter.safetensors"
    path.write_bytes(b"x")
    with pytest.raises(ConfigError, match="not an adapter folder"):
        check_adapter(path)
