"""Segmented prompts (builder, content marking, slots) and the segment KV store."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch

from counterpoint.runtime.backends.base import Message, Prompt, Segment
from counterpoint.runtime.kv._kv import KVBlock
from counterpoint.runtime.kv.builder import (
    Content,
    PromptBuilder,
    agent_output_key,
    mark_contents,
    merge_templates,
    slot_of,
)
from counterpoint.runtime.kv.segments import SegmentStore


class ChatML:
    """Renders like TransformersModel.render: template text around each message's content."""

    def render(self, messages: Sequence[Message]) -> Prompt:
        segments: list[Segment] = []
        for m in messages:
            segments.append(Segment(f"<|im_start|>{m.role}\n"))
            segments.append(Segment(m.content, kind="content", key=f"{m.role}:h"))
            segments.append(Segment("<|im_end|>\n"))
        segments.append(Segment("<|im_start|>assistant\n"))
        return Prompt(tuple(segments))


def test_slots_group_contents_by_placeholder() -> None:
    assert agent_output_key("critic", 3) == "agent:critic:step:3"
    assert slot_of("agent:critic:step:3") == "agent:critic"
    assert slot_of("user:q1") == "user"
    assert slot_of("out:abc:123") == "out:abc"
    assert slot_of("question") == "question"
    with pytest.raises(ValueError):
        Content("", "text")


def test_builder_marks_each_content_part_where_it_was_declared() -> None:
    builder = (
        PromptBuilder()
        .system("You are the critic.")
        .user("Q: ", Content("user:q1", "same"), " | A: ", Content("agent:a:step:0", "same"))
    )
    assert builder.messages()[1].content == "Q: same | A: same"
    prompt = builder.render(ChatML())
    assert prompt.text == ChatML().render(builder.messages()).text
    kinds = [(s.kind, s.key, s.text) for s in prompt.segments]
    assert kinds == [
        (
            "template",
            None,
            "<|im_start|>system\nYou are the critic.<|im_end|>\n<|im_start|>user\nQ: ",
        ),
        ("content", "user:q1", "same"),
        ("template", None, " | A: "),
        ("content", "agent:a:step:0", "same"),  # same text, its own key and place
        ("template", None, "<|im_end|>\n<|im_start|>assistant\n"),
    ]
    assert [c.key for c in builder.contents()] == ["user:q1", "agent:a:step:0"]


def test_mark_contents_finds_known_text_inside_messages() -> None:
    messages = [
        Message(role="system", content="Be brief. The plan is ready."),
        Message(role="user", content="Question: why?\n\nThe plan is ready. Go."),
        Message(role="user", content="unrelated"),
    ]
    known = [Content("agent:planner:step:0", "The plan is ready."), Content("user:q", "why?")]
    prompt = mark_contents(ChatML().render(messages), known)
    contents = [(s.key, s.text) for s in prompt.segments if s.kind == "content"]
    # never inside the system message (the agent's own template); unknown messages stay content
    assert contents == [
        ("user:q", "why?"),
        ("agent:planner:step:0", "The plan is ready."),
        ("user:h", "unrelated"),
    ]
    assert prompt.text == ChatML().render(messages).text
    only = mark_contents(ChatML().render(messages), known, contents_only=True)
    assert [s.key for s in only.segments if s.kind == "content"] == [
        "user:q",
        "agent:planner:step:0",
    ]


def test_merge_templates_drops_empty_segments() -> None:
    prompt = merge_templates(
        [Segment("a"), Segment(""), Segment("b"), Segment("c", "content", "k")]
    )
    assert prompt.segments == (Segment("ab"), Segment("c", "content", "k"))


def block(tokens: int) -> KVBlock:
    return KVBlock(torch.ones(1, 1, tokens, 4), torch.ones(1, 1, tokens, 4))


def test_segment_store_is_content_addressed_with_key_aliases() -> None:
    store = SegmentStore()
    entry = store.put("hello world", [1, 2], origin="shared", key="user:q1")
    assert store.get(text="hello world") is entry
    assert store.get(key="user:q1") is entry
    assert store.name("agent:x:step:0", "hello world") is entry
    assert entry.keys == {"user:q1", "agent:x:step:0"} and entry.name == "agent:x:step:0"
    assert store.name("k", "not stored") is None
    # content wins over a key that names something else
    assert store.get(key="user:q1", text="other text") is None
    # the first KV stays unless new KV is given; ids follow the KV
    assert store.put("hello world", [9, 9, 9], origin="prefilled") is entry
    assert entry.ids == (1, 2) and entry.kv is None
    store.put("hello world", [3, 4], origin="generated", kv=block(2), position=7)
    assert entry.ids == (3, 4) and entry.origin == "generated" and entry.position == 7
    assert store.nbytes == block(2).nbytes


def test_segment_store_evicts_least_recently_used_past_its_budget() -> None:
    store = SegmentStore(budget_bytes=2 * block(4).nbytes)
    a = store.put("a", [1], origin="generated", key="k:a", kv=block(4))
    store.put("b", [2], origin="generated", kv=block(4))
    store.get(text="a")
    store.put("c", [3], origin="generated", kv=block(4))
    assert store.get(text="b") is None
    assert store.get(text="a") is a and store.get(text="c") is not None
    assert store.nbytes == 2 * block(4).nbytes and store.evictions == 1
    small = SegmentStore(max_entries=2)
    for text in "xyz":
        small.put(text, [1], origin="shared", key=f"k:{text}")
    assert len(small) == 2 and small.get(key="k:x") is None
