"""Shared samples for the fine-tuning tests (built once per session: generation is cheap)."""

from __future__ import annotations

import pytest

from counterpoint.finetune.data import build_dataset
from counterpoint.finetune.traces import Sample


@pytest.fixture(scope="session")
def train_samples() -> list[Sample]:
    return build_dataset(300, seed=3, split="train")


@pytest.fixture(scope="session")
def held_out_samples() -> list[Sample]:
    return build_dataset(160, seed=3, split="held_out")


@pytest.fixture(scope="session")
def all_samples(train_samples: list[Sample], held_out_samples: list[Sample]) -> list[Sample]:
    return [*train_samples, *held_out_samples]
