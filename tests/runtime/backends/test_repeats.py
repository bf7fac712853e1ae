"""The local decoder keeps the model from writing a call it already wrote (repeat_calls=False).

The model tests steer the real embedded model along a script (a large bias on the script's next
token, which the grammar, the bans and the guard still mask), so that it writes a repeat on
purpose; ``repeat_calls=True`` shows the same script does write it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest
import torch

from counterpoint.core.calls import Call, CallResult
from counterpoint.errors import CounterpointError
from counterpoint.runtime.backends._repeats import CallLedger, call_key, marker_start
from counterpoint.runtime.backends._sampling import Choice
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from tests.runtime.backends._weather import CHAT, TOOLS

TOKYO = '[CALL] c1 [HEAD] get_weather(city="Tokyo") [END]\n'
AGAIN = '[CALL] c2 [HEAD] get_weather(city="Tokyo") [END]\n'


# -- the ledger ---------------------------------------------------------------------------------


def test_a_call_key_ignores_spelling_but_not_values() -> None:
    assert call_key('f(a=1, b="x")') == call_key("f(b='x',  a=1)")
    assert call_key('{"name": "f", "arguments": {"a": 1, "b": "x"}}') == call_key('f(a=1, b="x")')
    assert call_key("f(a=1)") != call_key("f(a=2)")
    assert call_key("f(a=1)") != call_key("g(a=1)")
    assert call_key("f(a=") is None


def test_marker_start_finds_a_call_marker_still_being_written() -> None:
    assert marker_start("[") == 0
    assert marker_start("done. [C") == 6
    assert marker_start("done.[CALL]") == 5
    assert marker_start("[[") == 1  # the second may still open one
    assert marker_start("[TR") is None
    assert marker_start("hello") is None


def test_the_ledger_records_blocks_written_in_pieces() -> None:
    ledger = CallLedger()
    for piece in ("[", "CALL] c1 [HEAD] f(", "a=1) [E", "ND]\n[TRAP][END]"):
        ledger.feed(piece)
    assert ledger.blocks == 1
    assert ledger.holds(call_key("f(a=1)") or "")
    assert not ledger.holds(call_key("f(a=2)") or "")
    twin = ledger.fork()
    twin.feed("[CALL] c2 [HEAD] f(a=2) [END]")
    assert twin.blocks == 2 and ledger.blocks == 1  # the fork is independent
    assert not ledger.holds(call_key("f(a=2)") or "")
    ledger.closed = True
    ledger.interrupted()
    assert not ledger.closed
    ledger.interrupted(failed=["c1"])  # c1 failed: writing it again is a retry
    assert not ledger.holds(call_key("f(a=1)") or "")


def test_a_broken_block_ends_the_ledger_s_block_too() -> None:
    ledger = CallLedger()
    ledger.feed("[CALL] c1 [HEAD] [END]")  # an empty body: a protocol error, not a call
    assert ledger.blocks == 0 and ledger.ended == 1 and ledger.last_key is None
    assert not ledger.in_block
    ledger.feed("[CALL] c2 [HEAD] f(")
    assert ledger.in_block


# -- on the real model --------------------------------------------------------------------------


class _Steered(TransformersDecoder):
    """Adds a large bias to the next token of ``script`` while the output written since
    ``origin`` (a token count) still follows it."""

    script = ""
    origin = 0

    def _pick(self, logits: torch.Tensor, refused: Sequence[int] = ()) -> Choice:
        written = self._owner.tokenizer.decode(list(self._generated_ids[self.origin :]))
        if self.script.startswith(written) and len(self.script) > len(written):
            steer = self._owner.encode(self.script[len(written) :])[0]
            logits = logits.clone()
            logits[steer] += 100.0
        return super()._pick(logits, refused)


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load()
    yield loaded
    loaded.close()


async def steered(
    model: TransformersModel,
    script: str,
    *,
    repeat: bool,
    tokens: int = 60,
    temperature: float = 0.0,
) -> _Steered:
    """Run a steered generation for ``tokens`` tokens (or to its end); return it, closed."""
    _Steered.script = script
    params = SamplingParams(
        max_tokens=tokens,
        repeat_calls=repeat,
        temperature=temperature,
        seed=7,
    )
    prompt = model.render_for(CHAT, TOOLS.specs())
    constraint = model._constraint(TOOLS.specs(), "auto")
    decoder = await model._open(_Steered, prompt.text, None, params, constraint=constraint)
    while await decoder.step() is not None:
        pass
    await decoder.close()
    return decoder


async def open_steered(model: TransformersModel, script: str, tokens: int) -> _Steered:
    """An open steered generation on the weather chat (the caller closes it)."""
    _Steered.script = script
    # the steering biases the choice, not the model the call threshold reads: a steered call
    # written after a result (no call in flight) would be declined
    params = SamplingParams(max_tokens=tokens, call_threshold=0.0)
    prompt = model.render_for(CHAT, TOOLS.specs())
    constraint = model._constraint(TOOLS.specs(), "auto")
    return await model._open(_Steered, prompt.text, None, params, constraint=constraint)


async def write(decoder: TransformersDecoder, chars: int) -> str:
    """Step until the text written reaches ``chars`` characters (or the stream ends)."""
    written = ""
    while len(written) < chars and (token := await decoder.step()) is not None:
        written += token.text
    return written


async def steer_on(decoder: _Steered, script: str) -> str:
    """Steer along ``script`` from here; step until it is written (at most 40 tokens)."""
    decoder.script, decoder.origin = script, len(decoder.generated_ids)
    after = ""
    for _ in range(40):
        token = await decoder.step()
        if token is None or script in after:
            break
        after += token.text
    return after


def text_of(model: TransformersModel, decoder: TransformersDecoder) -> str:
    text: str = model.tokenizer.decode(list(decoder.generated_ids))
    return text


@pytest.mark.model
async def test_a_repeated_call_is_not_written(model: TransformersModel) -> None:
    free = await steered(model, TOKYO + AGAIN, repeat=True)
    assert text_of(model, free).startswith(TOKYO + AGAIN)  # the script does repeat the call
    assert free.refused_calls == 0
    guarded = await steered(model, TOKYO + AGAIN, repeat=False)
    text = text_of(model, guarded)
    assert text.startswith(TOKYO)
    assert guarded.refused_calls >= 1
    assert 'get_weather(city="Tokyo")' not in text[len(TOKYO) :]
    assert "[CALL]" not in text[len(TOKYO) :]  # no block at all until something new arrives


@pytest.mark.model
async def test_a_repeat_after_a_trap_is_refused_too(model: TransformersModel) -> None:
    script = TOKYO + "[TRAP][END]\n" + AGAIN
    free = await steered(model, script, repeat=True)
    assert text_of(model, free).startswith(script)
    guarded = await steered(model, script, repeat=False)
    text = text_of(model, guarded)
    assert guarded.refused_calls >= 1
    assert text.startswith(TOKYO + "[TRAP][END]")
    assert 'get_weather(city="Tokyo")' not in text[len(TOKYO) :]


@pytest.mark.model
@pytest.mark.parametrize(
    ("jump", "temperature"),
    [(True, 0.0), (False, 0.0), (True, 0.9)],
    ids=["jump", "one", "sampled"],
)
async def test_a_new_call_costs_no_extra_pass_and_changes_nothing(
    model: TransformersModel, jump: bool, temperature: float
) -> None:
    """The look-ahead's tokens are taken over, not computed again: where nothing repeats, the
    guarded generation is the free one token for token (sampled ones too), with as many forward
    passes (every pass a look-ahead runs counts)."""
    script = TOKYO + '[CALL] c2 [HEAD] get_weather(city="Paris") [END]\n[TRAP][END]\n'
    model.jump_forward = jump
    try:
        free = await steered(model, script, repeat=True, temperature=temperature, tokens=80)
        guarded = await steered(model, script, repeat=False, temperature=temperature, tokens=80)
    finally:
        model.jump_forward = True
    assert text_of(model, free).startswith(script)
    assert guarded.generated_ids == free.generated_ids
    assert guarded.forward_passes == free.forward_passes
    assert guarded.refused_calls == 0


@pytest.mark.model
async def test_a_run_of_brackets_is_looked_at_one_marker_at_a_time(
    model: TransformersModel,
) -> None:
    """Each look-ahead follows only the marker its token began: a run of '[' costs nothing."""
    script = TOKYO + "[" * 30
    free = await steered(model, script, repeat=True, tokens=50)
    guarded = await steered(model, script, repeat=False, tokens=50)
    assert text_of(model, free).startswith(TOKYO + "[" * 10)
    assert guarded.generated_ids == free.generated_ids
    assert guarded.forward_passes == free.forward_passes


@pytest.mark.model
async def test_a_call_that_failed_may_be_written_again(model: TransformersModel) -> None:
    decoder = await open_steered(model, TOKYO, 120)
    try:
        assert await write(decoder, len(TOKYO)) == TOKYO
        call = Call(id="c1", name="get_weather", arguments={"city": "Tokyo"})
        await decoder.inject([CallResult(call=call, ok=False, text="timed out", error="timeout")])
        retry = '[CALL] c2 [HEAD] get_weather(city="Tokyo") [END]'
        assert (await steer_on(decoder, retry)).startswith(retry)
        assert decoder.refused_calls == 0
    finally:
        await decoder.close()


@pytest.mark.model
async def test_an_injected_result_opens_calls_again(model: TransformersModel) -> None:
    """After a refusal no block opens until something is injected; then a new call may."""
    decoder = await open_steered(model, TOKYO + AGAIN, 160)
    try:
        written = await write(decoder, len(TOKYO) + 1)
        assert decoder.refused_calls == 1
        assert not written[len(TOKYO) :].startswith("[")
        await decoder.extend('\n[INTR] c1 [HEAD] {"temp_c": 17} [END]\n')
        paris = '[CALL] c2 [HEAD] get_weather(city="Paris") [END]'
        assert (await steer_on(decoder, paris)).startswith(paris)
        assert decoder.refused_calls == 1
    finally:
        await decoder.close()


@pytest.mark.model
@pytest.mark.parametrize("bound", ["positions", "kv_bytes"])
async def test_no_room_to_look_ahead_leaves_the_context_exact(
    model: TransformersModel, bound: str
) -> None:
    """Where the context (or the model's KV budget, the look-ahead's tokens counted) has no
    room for the look-ahead, the token is written as chosen and the cache holds exactly the
    decoder's context; the step that overflows says so itself."""
    decoder = await open_steered(model, TOKYO + AGAIN, 120)
    limit, kv_bytes = model._max_positions, model.max_kv_bytes
    try:
        assert await write(decoder, len(TOKYO)) == TOKYO
        if bound == "positions":  # room for 3 tokens, not a block
            model._max_positions = len(decoder.context_ids) + 3
        else:
            model.max_kv_bytes = (len(decoder.context_ids) + 3) * model._kv_token_bytes
        token = await decoder.step()
        assert token is not None and token.text.strip() == "["  # not refused: not known
        assert decoder.refused_calls == 0
        cache = decoder.cache
        assert cache is not None and cache.get_seq_length() == len(decoder._ids)
        with pytest.raises(CounterpointError, match=r"context would grow|max_kv_bytes"):
            for _ in range(10):
                await decoder.step()
    finally:
        model._max_positions, model.max_kv_bytes = limit, kv_bytes
        await decoder.close()
