"""ScriptedModel: tokenisation, pacing, parts, policies and recorded extensions."""

from __future__ import annotations

import time

import pytest

from counterpoint.runtime.backends.base import Message, SamplingParams
from counterpoint.testing.scripted import ScriptedModel, scripted_tokens


async def _drain(decoder: object) -> str:
    out = []
    while (tok := await decoder.step()) is not None:  # type: ignore[attr-defined]
        out.append(tok.text)
    return "".join(out)


def test_tokens_split_markers_like_bpe() -> None:
    pieces = scripted_tokens("ok [CALL] c1 [HEAD] f(x=-12) [END]\n[TRAP][END]")
    assert "".join(pieces) == "ok [CALL] c1 [HEAD] f(x=-12) [END]\n[TRAP][END]"
    assert pieces[1:4] == [" ", "[", "CALL"]
    assert "][" not in pieces  # each bracket is its own piece


async def test_parts_wait_for_extend_and_record_it() -> None:
    model = ScriptedModel(["first part", "second part"])
    dec = await model.start([Message(role="user", content="hi")])
    assert await _drain(dec) == "first part"
    assert await dec.step() is None  # still waiting
    await dec.extend("[INTR] c1 [HEAD] 1 [END]\n")
    assert await _drain(dec) == "second part"
    await dec.extend("more")
    assert await dec.step() is None  # no third part: end of stream
    assert model.extensions == ["[INTR] c1 [HEAD] 1 [END]\n", "more"]
    assert dec.generated_tokens == len(scripted_tokens("first part")) * 2


async def test_extend_mid_part_continues_then_moves_on() -> None:
    model = ScriptedModel(["a b c", "d"])
    dec = await model.start([Message(role="user", content="hi")])
    first = await dec.step()
    assert first is not None and first.text == "a"
    await dec.extend("X")
    # the rest of the part, then straight on to the next part (something arrived meanwhile)
    assert await _drain(dec) == " b cd"


async def test_policy_sees_extensions() -> None:
    seen: list[list[str]] = []

    answered: list[str] = []

    def policy(ext: list[str]) -> str | None:
        seen.append(list(ext))
        if len(seen) == 1:
            return "go"
        new = ext[len(answered) :]
        if not new:
            return ""  # wait for a result
        answered.extend(new)
        return None if len(answered) > 1 else "got " + new[0]

    dec = await ScriptedModel(policy).start([Message(role="user", content="hi")])
    assert await _drain(dec) == "go"
    assert await dec.step() is None  # waiting, the policy is not asked again
    await dec.extend("R")
    assert await _drain(dec) == "got R"
    await dec.extend("S")
    assert await _drain(dec) == ""
    assert seen == [[], [], ["R"], ["R"], ["R", "S"]]
    assert await dec.step() is None


async def test_token_time_paces_without_drift() -> None:
    text = " ".join(["w"] * 20)
    n = len(scripted_tokens(text))
    fast = ScriptedModel(text, token_time_s=0.0)
    slow = ScriptedModel(text, token_time_s=0.01)
    t0 = time.perf_counter()
    await _drain(await fast.start([Message(role="user", content="x")]))
    t_fast = time.perf_counter() - t0
    t0 = time.perf_counter()
    await _drain(await slow.start([Message(role="user", content="x")]))
    t_slow = time.perf_counter() - t0
    assert t_slow > t_fast
    assert t_slow >= n * 0.01 * 0.9  # never faster than the schedule


async def test_max_tokens_and_stop() -> None:
    model = ScriptedModel("one two three four")
    dec = await model.start([Message(role="user", content="x")], SamplingParams(max_tokens=2))
    assert await _drain(dec) == "one two"
    dec = await model.start([Message(role="user", content="x")], SamplingParams(stop=["three"]))
    assert await _drain(dec) == "one two three"


def test_empty_script_rejected() -> None:
    with pytest.raises(ValueError):
        ScriptedModel([])
