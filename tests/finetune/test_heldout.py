"""The held-out evaluation judges real agent runs: ideal transcripts pass, wrong ones do not."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from counterpoint.cli import main
from counterpoint.finetune.heldout import HeldOutReport, evaluate_held_out
from counterpoint.finetune.traces import Sample
from counterpoint.testing import ScriptedModel
from counterpoint.testing.scripted import ScriptPolicy


def ideal_policy(sample: Sample) -> ScriptPolicy:
    """An ideal model for ``sample``: every call block of its transcript, then (once a result
    arrived for each) its reference answer."""
    blocks = "\n".join(
        seg.text for seg in sample.segments if seg.train and seg.text.startswith("[CALL]")
    )
    stage = [0]

    def policy(extended: Sequence[str]) -> str | None:
        stage[0] += 1
        if stage[0] == 1 and blocks:
            return blocks
        if "".join(extended).count("[INTR]") < len(sample.calls):
            stage[0] -= 1
            return ""
        return sample.answer if stage[0] <= 2 else None

    return policy


def _pick(samples: list[Sample], shape: str) -> Sample:
    return next(s for s in samples if s.shape == shape)


async def _judge(
    sample: Sample, parts: list[str] | ScriptPolicy, mode: str = "async"
) -> HeldOutReport:
    model = ScriptedModel(parts)
    return await evaluate_held_out(model, [sample], mode=mode, concurrency=1)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", ["single", "parallel", "chain"])
async def test_the_ideal_transcript_is_right_and_states_its_results(
    held_out_samples: list[Sample], shape: str
) -> None:
    sample = _pick(held_out_samples, shape)
    report = await _judge(sample, ideal_policy(sample))
    (case,) = report.cases
    assert case.expected and case.called == case.expected
    assert report.calls_right == 1.0
    assert report.answers_state_results == 1.0
    assert report.protocol_errors == 0.0


async def test_wrong_arguments_are_not_right(held_out_samples: list[Sample]) -> None:
    sample = _pick(held_out_samples, "single")
    (call,) = sample.calls
    wrong = {k: v for k, v in call.arguments.items()}
    first = next(iter(wrong))
    wrong[first] = "something else" if isinstance(wrong[first], str) else 12345
    body = ", ".join(f"{k}={json.dumps(v)}" for k, v in wrong.items())
    report = await _judge(sample, [f"[CALL] c1 [HEAD] {call.name}({body}) [END]", sample.answer])
    assert report.calls_right == 0.0
    assert report.answers_state_results is None  # judged only where the calls were right
    assert report.answers_state_results_all is not None


async def test_an_answer_that_ignores_the_results_does_not_state_them(
    held_out_samples: list[Sample],
) -> None:
    sample = next(s for s in held_out_samples if s.shape == "single" and s.calls[0].result)
    assert len(sample.calls) == 1
    block = next(seg.text for seg in sample.segments if seg.text.startswith("[CALL]"))
    report = await _judge(sample, [block, "Done, all went fine."])
    assert report.calls_right == 1.0
    assert report.answers_state_results == 0.0


async def test_abstaining_where_no_function_fits(held_out_samples: list[Sample]) -> None:
    sample = _pick(held_out_samples, "no_call")
    report = await _judge(sample, [sample.answer])
    assert report.abstained_right == 1.0
    sample_called = await _judge(sample, ["[CALL] c1 [HEAD] nothing_here() [END]", "Sorry."])
    assert sample_called.abstained_right == 0.0
    assert sample_called.protocol_errors == 0.0  # an unknown tool is an error result, not markup


def test_user_interrupt_samples_are_left_out(held_out_samples: list[Sample]) -> None:
    import asyncio

    chosen = [s for s in held_out_samples if s.shape == "user_interrupt"][:1]
    assert chosen
    report = asyncio.run(evaluate_held_out(ScriptedModel(["hi"]), chosen))
    assert report.cases == ()
    assert report.summary()["samples"] == 0


def test_finetune_eval_refuses_a_bad_mode(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "eval", "--mode", "fast", "-n", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "--mode must be sync, parallel or async" in err and "Traceback" not in err


@pytest.mark.model
def test_finetune_eval_runs_the_real_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "runs.json"
    with pytest.raises(SystemExit) as exc:
        main(["finetune", "eval", "-n", "2", "--seed", "1", "--json", str(out)])
    assert exc.value.code in (0, None)
    summary = json.loads(capsys.readouterr().out)
    assert summary["samples"] == len(json.loads(out.read_text())["cases"]) > 0
    assert set(summary) >= {"calls_right", "answers_state_results", "protocol_errors"}
