"""Generated traces are protocol-valid and follow the ideal asynchronous schedule."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from counterpoint.core.calls import Call, CallResult, Interrupt, UserInterrupt
from counterpoint.finetune import library
from counterpoint.finetune.traces import (
    Sample,
    answer_facts,
    facts_stated,
    render_value,
    result_text,
)
from counterpoint.protocol import (
    TRAP,
    USER_ID,
    CallBlock,
    CMLParser,
    MarkupError,
    TextPiece,
    TrapMarker,
    format_call,
    format_interrupts,
    parse_call,
)
from counterpoint.protocol.callsyntax import format_call_body
from counterpoint.runtime.backends._cml_messages import cml_messages
from counterpoint.runtime.backends.base import Message
from counterpoint.testing import PlannedCall, lpt_order, scripted_tokens

_INTR = re.compile(r"\[INTR\] (\w+) \[HEAD\] ")


def _model_events(sample: Sample) -> list[object]:
    """Feed the model-written spans to the real parser token by token; check safe points."""
    parser = CMLParser()
    events: list[object] = []
    for segment in sample.segments:
        if segment.train:
            for piece in scripted_tokens(segment.text):
                events.extend(parser.feed(piece))
        else:
            assert not parser.in_critical_section, (sample.id, "interrupt inside a block")
    events.extend(parser.finish())
    return events


def test_every_call_parses_and_validates(all_samples: list[Sample]) -> None:
    blocks = 0
    for s in all_samples:
        events = _model_events(s)
        assert not [e for e in events if isinstance(e, MarkupError)], s.id
        calls = [e for e in events if isinstance(e, CallBlock)]
        assert [c.call_id for c in calls] == [f"c{k + 1}" for k in range(len(calls))]
        assert len(calls) == len(s.calls)
        for block, call in zip(calls, s.calls, strict=True):
            assert not block.generated_id and block.call_id == call.id
            parsed = parse_call(block.body)
            assert parsed.name == call.name and parsed.arguments == call.arguments
            assert not parsed.positional
            assert call.name in s.tools
            library.entry(call.name).tool.validate(parsed.arguments)
            blocks += 1
        traps = [e for e in events if isinstance(e, TrapMarker)]
        assert len(traps) == s.generated.count(TRAP)
        text = "".join(e.text for e in events if isinstance(e, TextPiece)).strip()
        assert text == s.answer.strip()
    assert blocks > 500


def test_interrupts_are_the_runtimes_and_in_arrival_order(all_samples: list[Sample]) -> None:
    for s in all_samples:
        by_id = {c.id: c for c in s.calls}
        order: list[str] = []
        position = {}  # call id -> index of the segment that wrote it
        user_seen = -1
        for k, segment in enumerate(s.segments):
            if segment.train:
                for cid in re.findall(r"\[CALL\] (\w+) \[HEAD\]", segment.text):
                    position[cid] = k
                assert "[INTR]" not in segment.text
                continue
            ids = _INTR.findall(segment.text)
            assert ids and all(cid == USER_ID or position[cid] < k for cid in ids), (s.id, ids)
            items: list[Interrupt] = [
                CallResult(
                    call=Call(id=cid, name=by_id[cid].name, arguments=by_id[cid].arguments),
                    ok=True,
                    text=by_id[cid].result_text,
                )
                for cid in ids
                if cid != USER_ID
            ]
            if USER_ID in ids:  # a user message comes after the results injected with it
                assert ids[-1] == USER_ID and s.user_interrupt is not None
                items.append(UserInterrupt(s.user_interrupt))
                user_seen = k
                ids.remove(USER_ID)
            assert segment.text == format_interrupts(items)
            assert len({by_id[cid].injected_s for cid in ids}) <= 1
            order.extend(ids)
        assert sorted(order) == sorted(by_id), s.id  # each result injected exactly once
        if s.user_interrupt is not None:
            assert user_seen >= 0 and s.shape == "user_interrupt"
            later = [c for c in s.calls if c.asked_later]
            assert later and all(position[c.id] > user_seen for c in later), s.id
            first = min(c.written_s for c in s.calls)
            assert s.user_interrupt_s is not None and s.user_interrupt_s > first
            assert s.user_interrupt_s < max(c.arrives_s for c in s.calls if not c.asked_later)
        else:
            assert user_seen < 0 and not any(c.asked_later for c in s.calls)
        arrivals = [by_id[cid].arrives_s for cid in order]
        assert arrivals == sorted(arrivals), s.id
        for c in s.calls:
            assert c.arrives_s == pytest.approx(c.written_s + c.exec_s)
            assert c.injected_s >= c.arrives_s - 1e-9
            assert c.result_text == result_text(c.result)
        written = [c.written_s for c in s.calls]
        assert written == sorted(written)


def test_independent_calls_are_written_longest_first(all_samples: list[Sample]) -> None:
    checked = 0
    for s in all_samples:
        roots = [c for c in s.calls if not c.needs and not c.asked_later]
        priorities = [c.priority_s for c in roots]
        assert priorities == sorted(priorities, reverse=True), s.id
        if s.shape == "parallel":
            chains = [[PlannedCall(c.name, 0.0, c.estimated_s)] for c in s.calls]
            expected = lpt_order(chains, [(i, 0) for i in range(len(chains))])
            assert [i for i, _ in expected] == list(range(len(chains)))
            checked += 1
        for c in s.calls:  # each call had the highest priority of the calls ready when begun
            block = format_call(c.id, format_call_body(c.name, c.arguments))
            began = c.written_s - len(scripted_tokens(block)) * s.token_time_s
            ready = [d for d in s.calls if d.written_s >= c.written_s and d.ready_s <= began + 1e-9]
            assert max(d.priority_s for d in ready) == c.priority_s, (s.id, c.id)
            assert c.ready_s <= began + 1e-9
            assert (c.ready_s > 0) == bool(c.needs or c.asked_later)
    assert checked > 20


def test_dependent_calls_copy_results_after_their_interrupts(all_samples: list[Sample]) -> None:
    chains = 0
    for s in all_samples:
        by_id = {c.id: c for c in s.calls}
        text = s.transcript
        for c in s.calls:
            if not c.needs:
                assert not c.copied
                continue
            chains += 1
            call_at = text.index(f"[CALL] {c.id} [HEAD]")
            for need in c.needs:
                assert text.index(f"[INTR] {need} [HEAD]") < call_at, (s.id, c.id, need)
                assert by_id[need].injected_s <= c.written_s
            assert c.copied
            for param, ref in c.copied.items():
                source, field = ref.split(".")
                assert c.arguments[param] == by_id[source].result[field]
    assert chains > 50


def test_traps_only_when_nothing_can_be_written(all_samples: list[Sample]) -> None:
    for s in all_samples:
        for k, segment in enumerate(s.segments):
            if segment.text == TRAP:
                after = s.segments[k + 1]
                assert not after.train, (s.id, "a trap is always followed by an interrupt")
        assert not s.generated.rstrip().endswith(TRAP)


def test_answers_state_the_results(all_samples: list[Sample]) -> None:
    for s in all_samples:
        assert s.segments[-1].train and s.segments[-1].text == s.answer
        assert not any(m in s.answer for m in ("[CALL]", "[INTR]", "[TRAP]", "[END]", "[HEAD]"))
        for c in s.calls:
            values = [render_value(v) for v in c.result.values() if not isinstance(v, bool)]
            assert any(v in s.answer for v in values), (s.id, c.name, s.answer)


def test_questions_carry_the_values(all_samples: list[Sample]) -> None:
    for s in all_samples:
        for c in s.calls:
            for param, value in c.arguments.items():
                if param in c.copied or param in c.implied:
                    continue
                text = s.user_interrupt if c.asked_later else s.user
                assert text and render_value(value) in text, (s.id, c.name, param, value, text)


def test_sample_kinds_and_shapes(train_samples: list[Sample]) -> None:
    kinds = Counter(s.kind for s in train_samples)
    shapes = Counter(s.shape for s in train_samples)
    assert kinds["no_call"] >= 15 and kinds["partial"] >= 15 and kinds["chat"] >= 3
    assert all(shapes[k] >= 15 for k in ("single", "parallel", "chain", "fanout", "mix"))
    assert shapes["user_interrupt"] >= 10
    for s in train_samples:
        if s.kind in ("no_call", "chat"):
            assert not s.calls and "[CALL]" not in s.transcript and len(s.tools) >= 1
        elif s.kind == "partial":
            assert s.calls and (
                "can't" in s.answer or "couldn't" in s.answer or "none of" in s.answer
            )
        else:
            assert 1 <= len(s.calls) <= 6
    assert max(len(s.calls) for s in train_samples) == 6
    # agents with a single tool, calling it or declining it
    alone = Counter(s.kind for s in train_samples if len(s.tools) == 1)
    assert alone["calls"] >= 10 and alone["no_call"] + alone["chat"] >= 3
    assert {len(s.calls) for s in train_samples if s.shape == "chain"} >= {2, 3}


def test_enumerated_questions_list_values_of_one_call(train_samples: list[Sample]) -> None:
    """ "The weather in Paris, Rome and Oslo": one sentence, one call per listed value, the
    calls alike but for that one argument, each value written as the question lists it."""
    enumerated = [s for s in train_samples if s.shape == "enumerated"]
    assert len(enumerated) >= 15
    for s in enumerated:
        assert 2 <= len(s.calls) <= 4 and len({c.name for c in s.calls}) == 1
        differing = {
            param
            for c in s.calls[1:]
            for param, value in c.arguments.items()
            if value != s.calls[0].arguments[param]
        }
        assert len(differing) == 1, (s.id, s.user)
        (param,) = differing
        listed = [render_value(c.arguments[param]) for c in s.calls]
        assert len(set(listed)) == len(listed)
        at = [s.user.find(text) for text in listed]
        assert -1 not in at and at == sorted(at), (s.id, s.user, listed)


def test_near_misses_offer_the_missed_requests_own_domain(train_samples: list[Sample]) -> None:
    """Some abstentions offer functions on the right topic that do something else: the answer
    still says none fits, and the function asked for is never offered."""
    missing = [s for s in train_samples if s.kind in ("no_call", "partial")]
    assert all(s.missed is not None and s.missed not in s.tools for s in missing)
    near = [s for s in missing if s.near_miss]
    assert 0.3 <= len(near) / len(missing) <= 0.7  # NEAR_MISS_SHARE is 0.5
    for s in near:
        assert s.missed is not None
        domain = library.entry(s.missed).domain
        assert any(library.entry(t).domain == domain for t in s.tools)
        if s.kind == "no_call":
            assert not s.calls and "[CALL]" not in s.transcript
    assert not any(s.near_miss or s.missed for s in train_samples if s.kind in ("calls", "chat"))


def test_variety(train_samples: list[Sample]) -> None:
    asked = [s for s in train_samples if s.kind != "chat"]
    questions = {s.user for s in asked}
    templates = {t for s in asked for t in s.templates}
    assert len(questions) >= 0.97 * len(asked)
    repeated = Counter(t for s in asked if len(s.templates) == 1 for t in s.templates)
    again = [t for t, n in repeated.items() if n > 1]
    filled = {s.user for s in asked if len(s.templates) == 1 and s.templates[0] in again}
    assert again and len(filled) > 1.5 * len(again)  # the same template, other values
    assert len(templates) > 250
    assert len({round(s.token_time_s, 3) for s in train_samples}) > 20
    latencies = {(n, s.latencies[n]) for s in train_samples for n in s.tools}
    assert len(latencies) > 2 * len({n for s in train_samples for n in s.tools})


def test_splits_never_mix(train_samples: list[Sample], held_out_samples: list[Sample]) -> None:
    held = {e.name for e in library.entries("held_out")}
    for s in train_samples:
        assert not set(s.tools) & held and not {c.name for c in s.calls} & held
    for s in held_out_samples:
        assert set(s.tools) <= held
    assert {c.name for s in held_out_samples for c in s.calls} == held


def test_system_prompt_is_the_runtimes(all_samples: list[Sample]) -> None:
    for s in all_samples[:60]:
        rendered = cml_messages(
            [Message(role="system", content=s.instructions), Message(role="user", content=s.user)],
            s.specs(),
        )
        assert [m.content for m in rendered] == [s.system, s.user]
        for name in s.tools:
            assert f"- {library.entry(name).tool.signature()} (takes ~" in s.system


def test_answer_facts_measure_the_answer(all_samples: list[Sample]) -> None:
    with_facts = 0
    for s in all_samples:
        facts = answer_facts(s)
        assert facts_stated(s, s.answer) == 1.0
        if facts:
            with_facts += 1
            assert facts_stated(s, "I don't know.") == 0.0
            assert facts_stated(s, s.answer.replace(facts[0], "")) < 1.0
    assert with_facts > 0.7 * sum(1 for s in all_samples if s.calls)


def test_failed_calls_are_reported(train_samples: list[Sample]) -> None:
    failed = [(s, c) for s in train_samples for c in s.calls if "error" in c.result]
    assert len(failed) >= 3
    for s, c in failed:
        assert c.result["error"] in s.answer, s.id
        assert not [d for d in s.calls if c.id in d.needs]  # nothing builds on a failure


def test_blocking_traces_read_each_result_right_after_its_block(
    train_samples: list[Sample],
) -> None:
    """What sync mode shows the model: every result directly after its call block, no trap."""
    with_calls = [s for s in train_samples if s.calls]
    blocking = [s for s in with_calls if s.schedule == "blocking"]
    assert 0.2 < len(blocking) / len(with_calls) < 0.5
    assert all(s.shape != "user_interrupt" for s in blocking)
    for s in blocking:
        assert "[TRAP]" not in s.generated, s.id
        segments = list(s.segments)
        for k, segment in enumerate(segments):
            if segment.train and segment.text.startswith("[CALL]"):
                after = segments[k + 1]
                assert not after.train and after.text.startswith("[INTR]"), s.id
        assert all(c.exec_s == 0.0 and c.injected_s == c.written_s for c in s.calls), s.id
    assert any(s.schedule == "async" and "[TRAP]" in s.generated for s in with_calls)
