"""Greedy decoding opens a call block only where the model finds a call likelier than not
(``SamplingParams.call_threshold``): the probability of the block summed over every token
that can open it, not the single likeliest token.

The model tests rig the first step's logits of the real embedded model (a lone ``[`` with 30%
against ten words at 7% each: greedy's argmax is ``[``, the model's likelier event is an
answer in words) and let the real model write on from there.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import ClassVar

import pytest
import torch
from pydantic import ValidationError

from counterpoint.core.calls import Call, CallResult
from counterpoint.runtime.backends._repeats import CallLedger, marker_odds, opener_mask
from counterpoint.runtime.backends.base import SamplingParams, Token
from counterpoint.runtime.backends.transformers import TransformersDecoder, TransformersModel
from tests.runtime.backends._weather import CHAT, TOOLS

WORDS = [" The", " I", " It", " Sure", " Tokyo", " Let", " Hello", " We", " Yes", " No"]


# -- the probability of a marker ------------------------------------------------------------------


def test_openers_are_the_tokens_that_can_begin_a_call_marker() -> None:
    texts = ["[", " [", "[C", "[CALL]", ".[", "[TR", "CALL", "a", "", "x[CA"]
    assert opener_mask(texts).tolist() == [1, 1, 1, 1, 1, 0, 0, 0, 0, 1]


def test_a_marker_s_odds_are_its_openers_mass_times_its_path() -> None:
    logits = torch.log(torch.tensor([0.3, 0.1, 0.6]))
    openers = torch.tensor([True, True, False])
    # "[" went on to "C" with probability 0.5, then "ALL]" (certain): 0.4 * 0.5
    after = [("C", math.log(0.5)), ("ALL]", 0.0), (" c1", math.log(0.1))]
    odds = marker_odds(logits, openers, lead="[", after=after)
    assert odds.opened == pytest.approx(0.4)
    assert odds.completes == pytest.approx(0.5)
    assert odds.marker == pytest.approx(0.2)
    assert odds.opened_otherwise == pytest.approx(0.2)
    assert odds.others == pytest.approx(0.6)
    # the tokens after the marker is complete do not count
    assert marker_odds(logits, openers, lead="[CALL]", after=after).marker == pytest.approx(0.4)
    # -inf logits (banned ids) carry no mass
    banned = torch.tensor([0.0, float("-inf"), 0.0])
    assert marker_odds(banned, openers, lead="[CALL]", after=[]).marker == pytest.approx(0.5)


def test_the_ledger_knows_which_calls_wait_for_their_results() -> None:
    ledger = CallLedger()
    ledger.feed("[CALL] c1 [HEAD] f(a=1) [END]\n[CALL] c2 [HEAD] f(a=2) [END]\n")
    assert ledger.in_flight == 2
    twin = ledger.fork()
    ledger.interrupted(answered=["c1"])
    assert ledger.in_flight == 1 and twin.in_flight == 2  # the fork is independent
    ledger.interrupted(failed=["c2"])
    assert ledger.in_flight == 0


def test_the_threshold_is_a_probability_below_one() -> None:
    assert SamplingParams().call_threshold == 0.5
    assert SamplingParams(call_threshold=0.0).call_threshold == 0.0
    for bad in (-0.1, 1.0):
        with pytest.raises(ValidationError):
            SamplingParams(call_threshold=bad)


# -- on the real model ----------------------------------------------------------------------------


class _Rig(TransformersDecoder):
    """The first step chooses from ``first`` (token text -> probability, every other token
    ~0); where it wrote ``[``, the next from ``bracket`` (if given). The real model writes on."""

    first: ClassVar[dict[str, float]] = {}
    bracket: ClassVar[dict[str, float] | None] = None

    def _step_end(self) -> Token | None:
        table: dict[str, float] | None = None
        if self._logits is not None and not self._generated_ids:
            table = self.first
        elif self._logits is not None and len(self._generated_ids) == 1:
            wrote = self._owner.tokenizer.decode(list(self._generated_ids))
            table = self.bracket if wrote == "[" else None
        if table is not None:
            assert self._logits is not None
            rigged = torch.full_like(self._logits, -40.0)
            for text, p in table.items():
                rigged[self._owner.encode(text)[0]] = math.log(p)
            self._logits = rigged
        return super()._step_end()


class _Rigged(_Rig):
    """``[`` at 30%, ten words at 7% each: ``[`` is the likeliest token, words the likelier
    event."""

    first: ClassVar[dict[str, float]] = {"[": 0.3, **dict.fromkeys(WORDS, 0.07), " The": 0.071}


class _RiggedTrap(_Rig):
    """``[`` (90%), then ``C`` (of ``[CALL]``) 55%, ``TR`` (of ``[TRAP]``) 45%: a call is
    49.5% likely, so greedy's ``[C`` is declined; a trap (40.5%) is likelier than ``The``
    (10%)."""

    first: ClassVar[dict[str, float]] = {"[": 0.9, " The": 0.1}
    bracket: ClassVar[dict[str, float] | None] = {"C": 0.55, "TR": 0.45}


class _RiggedWords(_Rig):
    """``[`` (40%), then ``C`` 60%, ``TR`` 40%; four words at 15% each: the call (24%) is
    declined, and ``[`` going on to a trap (16%) beats each word but not the words (60%)."""

    first: ClassVar[dict[str, float]] = {
        "[": 0.4,
        " The": 0.15,
        " It": 0.149,
        " Sure": 0.149,
        " Tokyo": 0.149,
    }
    bracket: ClassVar[dict[str, float] | None] = {"C": 0.6, "TR": 0.4}


class _RiggedAfterCall(TransformersDecoder):
    """The first free step after the first call block chooses from :class:`_Rigged`'s logits,
    and a ``[`` written there goes on to ``[CALL]``."""

    rigged_at: int | None = None

    def _step_end(self) -> Token | None:
        constraint = self._constraint
        after_call = constraint is not None and constraint.calls == 1 and not self._ledger.in_block
        if self._logits is not None and after_call and self.rigged_at is None:
            self.rigged_at = len(self._generated_ids)
            rigged = torch.full_like(self._logits, -40.0)
            rigged[self._owner.encode("[")[0]] = math.log(0.3)
            for word in WORDS:
                rigged[self._owner.encode(word)[0]] = math.log(0.07)
            rigged[self._owner.encode(" The")[0]] = math.log(0.071)
            self._logits = rigged
        elif self._logits is not None and self._after_rigged_bracket():
            rigged = torch.full_like(self._logits, -40.0)
            rigged[self._owner.encode("C")[0]] = 0.0
            self._logits = rigged
        return super()._step_end()

    def _after_rigged_bracket(self) -> bool:
        ids = self._generated_ids
        at = self.rigged_at
        return (
            at is not None and len(ids) == at + 1 and self._owner.tokenizer.decode(ids[-1:]) == "["
        )


@pytest.fixture(scope="module")
def model() -> Iterator[TransformersModel]:
    loaded = TransformersModel.load()
    yield loaded
    loaded.close()


async def open_rigged(
    model: TransformersModel, rig: type[TransformersDecoder], sampling: SamplingParams
) -> TransformersDecoder:
    """A ``rig`` decoder on the weather chat, constrained to its tools."""
    prompt = model.render_for(CHAT, TOOLS.specs())
    constraint = model._constraint(TOOLS.specs(), sampling.tool_choice)
    return await model._open(rig, prompt.text, None, sampling, constraint=constraint)


async def rigged(
    model: TransformersModel,
    tool_choice: str = "auto",
    rig: type[TransformersDecoder] = _Rigged,
    **params: float,
) -> tuple[str, TransformersDecoder]:
    """Write 24 tokens from the rigged first steps; return the text and the (closed) decoder."""
    sampling = SamplingParams(max_tokens=24, tool_choice=tool_choice, **params)  # type: ignore[arg-type]
    decoder = await open_rigged(model, rig, sampling)
    text = ""
    while (token := await decoder.step()) is not None:
        text += token.text
    await decoder.close()
    return text, decoder


@pytest.mark.model
async def test_greedy_answers_where_a_call_is_less_likely_than_not(
    model: TransformersModel,
) -> None:
    text, decoder = await rigged(model)  # call_threshold=0.5 by default
    assert text.startswith(" The"), text  # words (70%) beat "[" (30%), though "[" is argmax
    assert "[CALL]" not in text[:6]
    assert decoder.declined_calls >= 1


@pytest.mark.model
async def test_without_the_threshold_the_likeliest_token_opens_the_call(
    model: TransformersModel,
) -> None:
    text, decoder = await rigged(model, call_threshold=0.0)
    assert text.startswith("[CALL] c1 [HEAD] get_weather("), text
    assert decoder.declined_calls == 0
    low, _ = await rigged(model, call_threshold=0.2)  # 30% of "[", nearly all of it a call
    assert low == text


@pytest.mark.model
async def test_sampling_is_not_gated(model: TransformersModel) -> None:
    # seed 2 draws "[" then "C": a call of 49.5%, which greedy decoding would decline
    text, decoder = await rigged(model, rig=_RiggedTrap, temperature=1.0, seed=2)
    assert text.startswith("[CALL] c1 [HEAD] get_weather("), text
    assert decoder.declined_calls == 0


@pytest.mark.model
async def test_a_declined_call_s_bracket_goes_on_to_the_likelier_marker(
    model: TransformersModel,
) -> None:
    text, decoder = await rigged(model, rig=_RiggedTrap)
    assert text.startswith("[TRAP][END]"), text  # not " The" (10%), not "[C"
    assert decoder.declined_calls == 1
    free, _ = await rigged(model, rig=_RiggedTrap, call_threshold=0.0)
    assert free.startswith("[CALL] c1 [HEAD] get_weather("), free


@pytest.mark.model
async def test_a_declined_call_s_bracket_is_weighed_against_every_word(
    model: TransformersModel,
) -> None:
    text, decoder = await rigged(model, rig=_RiggedWords)
    assert text.startswith(" The"), text  # not "[TR": 16% against 60% of words
    assert decoder.declined_calls == 1


async def after_a_call(
    model: TransformersModel, *, answer: bool, repeat_calls: bool = True, max_tokens: int = 80
) -> tuple[str, TransformersDecoder]:
    """A required first call, its result injected (``answer``) or not, then the rigged step.

    (``repeat_calls``: the rigged second call repeats the first; that is not what these tests
    are about, unless they say so.)"""
    sampling = SamplingParams(
        max_tokens=max_tokens, tool_choice="required", repeat_calls=repeat_calls
    )
    decoder = await open_rigged(model, _RiggedAfterCall, sampling)
    text = ""
    while "[END]" not in text and (token := await decoder.step()) is not None:
        text += token.text
    if answer:
        call = Call(id="c1", name="get_weather", arguments={"city": "Tokyo"})
        await decoder.inject(
            [CallResult(call=call, ok=True, text='{"city": "Tokyo", "temp_c": 17}')]
        )
    after = ""
    for _ in range(6):
        if (token := await decoder.step()) is None:
            break
        after += token.text
    await decoder.close()
    return after, decoder


@pytest.mark.model
async def test_the_gate_decides_between_calling_again_and_answering(
    model: TransformersModel,
) -> None:
    # the result is in: another call (30%) or the answer (70%)? The answer.
    after, decoder = await after_a_call(model, answer=True)
    assert after.startswith(" The"), after
    assert decoder.declined_calls == 1
    # c1 still runs: "[" (another call, or a trap to wait) is the model's to choose
    after, decoder = await after_a_call(model, answer=False)
    assert after.startswith("[CALL] c2"), after
    assert decoder.declined_calls == 0


@pytest.mark.model
async def test_a_block_the_token_budget_cuts_still_counts_as_a_call(
    model: TransformersModel,
) -> None:
    # With the repeat guard on, the look-ahead writes the whole block; 28 tokens end it inside
    # the block, after [CALL]: that is a call (declined here), not an unknown to write on with.
    after, decoder = await after_a_call(model, answer=True, repeat_calls=False, max_tokens=28)
    assert after.startswith(" The"), after
    assert decoder.declined_calls == 1
