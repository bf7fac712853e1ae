"""Teacher-forced replay on the real embedded model."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from counterpoint.runtime.backends.base import Decoder, Message, Model, Prompt
from counterpoint.runtime.backends.transformers import TransformersModel
from counterpoint.testing.replay import ReplayModel

FRANCE = [Message(role="user", content="What is the capital of France?")]


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load()
    yield loaded
    loaded.close()


async def generate(decoder: Decoder, limit: int = 200) -> list[str]:
    pieces = []
    for _ in range(limit):
        token = await decoder.step()
        if token is None:
            break
        pieces.append(token.text)
    return pieces


@pytest.mark.model
async def test_replay_emits_the_script_with_real_forward_passes(
    model: TransformersModel,
) -> None:
    script = '[CALL] c1 [HEAD] get_weather(city="Paris") [END]\nIt is sunny in Paris.'
    replay = ReplayModel(model, script)
    assert isinstance(replay, Model)
    decoder = await replay.start(FRANCE)
    pieces = await generate(decoder, 8)
    assert decoder.cache is not None
    # Every emitted token but the pending last one was fed to the real model.
    assert decoder.cache.get_seq_length() == len(decoder.context_ids) - 1
    await decoder.extend('[INTR] c1 [HEAD] {"temp_c": 17} [END]\n')  # does not consume script
    pieces += await generate(decoder, 500)
    assert "".join(pieces) == script
    assert await decoder.step() is None
    assert decoder.generated_tokens == len(model.encode(script, special_tokens=True))
    assert decoder.cache.get_seq_length() == len(decoder.context_ids) - 1
    assert decoder.decode_s_total > 0


@pytest.mark.model
async def test_replay_stops_at_an_eos_in_the_script(model: TransformersModel) -> None:
    replay = ReplayModel(model, "Done.<|im_end|>And more.")
    decoder = await replay.start(Prompt.of(model.render(FRANCE).text))
    assert "".join(await generate(decoder)) == "Done."
    await decoder.extend("\n")
    assert "".join(await generate(decoder)) == "And more."
