"""Tests for the streaming CML parser."""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from counterpoint.protocol.callsyntax import format_call_body, parse_call
from counterpoint.protocol.cml import (
    MARKERS,
    TRAP,
    CallBlock,
    CMLParser,
    MarkupError,
    ParseEvent,
    TextPiece,
    TrapMarker,
    format_call,
    format_interrupt,
)

# -- helpers -------------------------------------------------------------------------------------


def run(pieces: list[str], parser: CMLParser | None = None) -> list[ParseEvent]:
    parser = parser or CMLParser()
    events: list[ParseEvent] = []
    for piece in pieces:
        events += parser.feed(piece)
    events += parser.finish()
    return events


def run_text(text: str) -> list[ParseEvent]:
    return run([text])


def text_of(events: list[ParseEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextPiece))


def non_text(events: list[ParseEvent]) -> list[ParseEvent]:
    return [e for e in events if not isinstance(e, TextPiece)]


def reconstruct(events: list[ParseEvent]) -> str:
    """Every input character lands in exactly one event: text, or the raw of a block."""
    return "".join(e.text if isinstance(e, TextPiece) else e.raw for e in events)


def calls(events: list[ParseEvent]) -> list[CallBlock]:
    return [e for e in events if isinstance(e, CallBlock)]


def errors(events: list[ParseEvent]) -> list[MarkupError]:
    return [e for e in events if isinstance(e, MarkupError)]


# -- the protocol constants ----------------------------------------------------------------------


def test_constants_and_formatters() -> None:
    assert set(MARKERS) == {"[CALL]", "[HEAD]", "[END]", "[INTR]", "[TRAP]"}
    assert TRAP == "[TRAP][END]"
    assert TrapMarker().raw == TRAP
    assert format_call("c1", 'f(x="a")') == '[CALL] c1 [HEAD] f(x="a") [END]'
    assert format_interrupt("c1", '{"temp_c": 17}') == '[INTR] c1 [HEAD] {"temp_c": 17} [END]\n'
    with pytest.raises(ValueError, match="identifier"):
        format_call("c-1", "f()")
    with pytest.raises(ValueError, match="identifier"):
        format_interrupt("1c", "x")
    with pytest.raises(ValueError, match="identifier"):
        CMLParser(id_prefix="call-")


def test_format_call_is_parsed_back() -> None:
    events = run_text(format_call("job_7", format_call_body("get_weather", {"city": "Paris"})))
    assert events == [
        CallBlock(
            call_id="job_7",
            body='get_weather(city="Paris")',
            raw='[CALL] job_7 [HEAD] get_weather(city="Paris") [END]',
            generated_id=False,
        )
    ]
    assert parse_call(calls(events)[0].body).arguments == {"city": "Paris"}


# -- calls ---------------------------------------------------------------------------------------


def test_call_with_id() -> None:
    events = run_text('Let me check. [CALL] c1 [HEAD] get_weather(city="Paris") [END] Done.')
    assert events == [
        TextPiece("Let me check. "),
        CallBlock(
            "c1",
            'get_weather(city="Paris")',
            '[CALL] c1 [HEAD] get_weather(city="Paris") [END]',
            False,
        ),
        TextPiece(" Done."),
    ]


def test_call_without_id_gets_generated_ids_skipping_used_ones() -> None:
    parser = CMLParser()
    parser.reserve_id("c2")
    events = run(
        ["[CALL] f(x=1) [END]", "[CALL] c3 [HEAD] g() [END]", "[CALL] h() [END][CALL] k() [END]"],
        parser,
    )
    assert [(c.call_id, c.body, c.generated_id) for c in calls(events)] == [
        ("c1", "f(x=1)", True),
        ("c3", "g()", False),
        ("c4", "h()", True),
        ("c5", "k()", True),
    ]
    assert errors(events) == []


def test_id_prefix() -> None:
    events = run_text("[CALL] f() [END][CALL] g() [END]")
    assert [c.call_id for c in calls(events)] == ["c1", "c2"]
    parser = CMLParser(id_prefix="job")
    assert [c.call_id for c in calls(run(["[CALL] f() [END]"], parser))] == ["job1"]


def test_empty_id_before_head_is_generated() -> None:
    events = run_text("[CALL] [HEAD] f() [END]")
    assert [(c.call_id, c.generated_id) for c in calls(events)] == [("c1", True)]


def test_whitespace_around_id_and_body_is_stripped_and_body_may_span_lines() -> None:
    body = 'search(\n    query="a b",\n    limit=3,\n)'
    events = run_text(f"[CALL]\n  c7\t[HEAD]\n{body}\n\n[END]")
    (call,) = calls(events)
    assert (call.call_id, call.body) == ("c7", body)
    assert parse_call(call.body).arguments == {"query": "a b", "limit": 3}
    events = run_text("[CALL]c8[HEAD]f()[END]")
    assert [(c.call_id, c.body) for c in calls(events)] == [("c8", "f()")]


def test_brackets_inside_a_body_are_body_text() -> None:
    body = 'f(xs=[1, [2]], d={"k": [True, None]}, s="[C] [x] [EN")'
    (call,) = run_text(f"[CALL] c1 [HEAD] {body} [END]")
    assert isinstance(call, CallBlock)
    assert call.body == body


def test_duplicate_id_is_an_error_naming_it() -> None:
    events = run_text("[CALL] c1 [HEAD] f() [END] [CALL] c1 [HEAD] g() [END]")
    assert [c.call_id for c in calls(events)] == ["c1"]
    (error,) = errors(events)
    assert error.call_id == "c1"
    assert "c1" in error.message
    assert "already used" in error.message
    assert error.raw == "[CALL] c1 [HEAD] g() [END]"


def test_reserved_id_is_a_duplicate() -> None:
    parser = CMLParser()
    parser.reserve_id("c1")
    (error,) = run(["[CALL] c1 [HEAD] f() [END]"], parser)
    assert isinstance(error, MarkupError)
    assert error.call_id == "c1"


def test_ids_persist_across_turns() -> None:
    parser = CMLParser()
    first = run(["[CALL] f() [END]"], parser)
    second = run(["[CALL] c1 [HEAD] f() [END][CALL] g() [END]"], parser)
    assert [c.call_id for c in calls(first)] == ["c1"]
    assert [c.call_id for c in calls(second)] == ["c2"]
    assert [e.call_id for e in errors(second)] == ["c1"]


@pytest.mark.parametrize("bad_id", ["call-1", "1c", "c 1", "c1()", "'c1'"])
def test_invalid_id_is_an_error(bad_id: str) -> None:
    events = run_text(f"[CALL] {bad_id} [HEAD] f() [END] after")
    assert calls(events) == []
    (error,) = errors(events)
    assert repr(bad_id) in error.message
    assert error.call_id is None
    assert text_of(events) == " after"


def test_errored_block_does_not_use_up_its_id() -> None:
    events = run_text("[CALL] c1 [HEAD] [END] [CALL] c1 [HEAD] f() [END]")
    assert "empty body" in errors(events)[0].message
    assert errors(events)[0].call_id == "c1"
    assert [c.call_id for c in calls(events)] == ["c1"]


def test_empty_body_is_an_error() -> None:
    events = run_text("[CALL] [END]")
    (error,) = events
    assert isinstance(error, MarkupError)
    assert "empty body" in error.message
    assert error.call_id is None


def test_two_heads_is_an_error() -> None:
    (error,) = run_text("[CALL] c1 [HEAD] f() [HEAD] g() [END]")
    assert isinstance(error, MarkupError)
    assert "more than one [HEAD]" in error.message
    assert error.call_id == "c1"


def test_call_inside_an_open_call_reports_the_unterminated_one_then_starts_the_new_one() -> None:
    events = run_text("[CALL] c1 [HEAD] f(x=1) [CALL] c2 [HEAD] g() [END]")
    assert events == [
        MarkupError(
            "call c1 was not closed with [END]; it was not run. "
            "Write each call as [CALL] id [HEAD] name(arg=value) [END].",
            raw="[CALL] c1 [HEAD] f(x=1) ",
            call_id="c1",
        ),
        CallBlock("c2", "g()", "[CALL] c2 [HEAD] g() [END]", False),
    ]


def test_unterminated_call_at_finish() -> None:
    parser = CMLParser()
    assert parser.feed("ok [CALL] c3 [HEAD] f(x=") == [TextPiece("ok ")]
    assert parser.in_critical_section
    assert parser.feed("1) [EN") == []
    events = parser.finish()
    (error,) = events
    assert isinstance(error, MarkupError)
    assert error.message.startswith("call c3 was not closed with [END]")
    assert error.call_id == "c3"
    assert error.raw == "[CALL] c3 [HEAD] f(x=1) [EN"
    assert not parser.in_critical_section


def test_unterminated_call_without_id_at_finish() -> None:
    (error,) = run_text("[CALL] f(x=1)")
    assert isinstance(error, MarkupError)
    assert error.message.startswith("a [CALL] block was not closed")
    assert error.call_id is None


# -- interrupts, traps, stray markers ------------------------------------------------------------


def test_model_written_interrupt_is_a_protocol_error_skipped_to_its_end() -> None:
    events = run_text('a [INTR] c1 [HEAD] {"temp_c": 17} [END] b')
    assert text_of(events) == "a  b"
    (error,) = errors(events)
    assert "only the runtime writes [INTR]" in error.message
    assert error.raw == '[INTR] c1 [HEAD] {"temp_c": 17} [END]'
    assert calls(events) == []


def test_model_interrupt_skips_everything_but_call_and_end() -> None:
    events = run_text("[INTR] c1 [HEAD] x [TRAP] y [END][TRAP][END]")
    assert [type(e) for e in events] == [MarkupError, TrapMarker]
    events = run_text("[INTR] c1 [HEAD] x [CALL] f() [END]")
    assert [type(e) for e in events] == [MarkupError, CallBlock]
    assert "not closed" in errors(events)[0].message
    (error,) = run_text("[INTR] c1 [HEAD] never closed")
    assert isinstance(error, MarkupError)
    assert error.raw == "[INTR] c1 [HEAD] never closed"


def test_interrupt_inside_a_call_closes_the_call_with_an_error() -> None:
    events = run_text("[CALL] c1 [HEAD] f( [INTR] c1 [HEAD] 1 [END]")
    assert [e.raw for e in errors(events)] == ["[CALL] c1 [HEAD] f( ", "[INTR] c1 [HEAD] 1 [END]"]


@pytest.mark.parametrize(
    "trap", ["[TRAP][END]", "[TRAP] [END]", "[TRAP]\n[END]", "[TRAP] \n\t[END]"]
)
def test_trap(trap: str) -> None:
    events = run_text(f"waiting {trap}\n")
    assert events == [TextPiece("waiting "), TrapMarker(raw=trap), TextPiece("\n")]


def test_trap_followed_by_text_is_an_error() -> None:
    events = run_text("[TRAP] waiting [END]")
    assert events[0] == MarkupError(
        "[TRAP] must be followed directly by [END]: write [TRAP][END] to wait for results.",
        raw="[TRAP] ",
    )
    assert text_of(events) == "waiting "
    assert [e.raw for e in errors(events)] == ["[TRAP] ", "[END]"]


def test_trap_followed_by_another_marker() -> None:
    events = run_text("[TRAP][CALL] f() [END]")
    assert [type(e) for e in events] == [MarkupError, CallBlock]
    events = run_text("[TRAP][TRAP][END]")
    assert [type(e) for e in events] == [MarkupError, TrapMarker]
    events = run_text("[CALL] f( [TRAP][END]")
    assert [type(e) for e in events] == [MarkupError, TrapMarker]


def test_trap_cut_off_at_end_of_stream_is_still_a_trap() -> None:
    assert run_text("[TRAP]") == [TrapMarker(raw="[TRAP]")]
    assert run_text("[TRAP] [EN") == [TrapMarker(raw="[TRAP] [EN")]
    events = run_text("[TRAP] [CA")
    assert [type(e) for e in events] == [MarkupError, TextPiece]
    assert text_of(events) == "[CA"


@pytest.mark.parametrize("marker", ["[END]", "[HEAD]"])
def test_stray_end_and_head_are_errors_dropped_from_text(marker: str) -> None:
    events = run_text(f"one {marker} two")
    assert text_of(events) == "one  two"
    (error,) = errors(events)
    assert error.raw == marker
    assert "outside a call block" in error.message


def test_markers_are_case_sensitive_and_exact() -> None:
    text = "[call] f() [end] [ CALL ] [Trap][End] [CALL ]"
    assert run_text(text) == [TextPiece(text)]


# -- streaming -----------------------------------------------------------------------------------


def test_marker_split_across_tokens() -> None:
    parser = CMLParser()
    out: list[list[ParseEvent]] = []
    critical: list[bool] = []
    for token in [
        "Hi",
        " [",
        "C",
        "ALL",
        "]",
        " c",
        "1",
        " [",
        "HEAD",
        "] f",
        "()",
        " [",
        "END",
        "]",
    ]:
        out.append(parser.feed(token))
        critical.append(parser.in_critical_section)
    assert out[0] == [TextPiece("Hi")]
    assert out[1] == [TextPiece(" ")]  # "[" is held back as a possible marker
    assert all(events == [] for events in out[2:-1])
    assert out[-1] == [CallBlock("c1", "f()", "[CALL] c1 [HEAD] f() [END]", False)]
    assert critical == [False] + [True] * 12 + [False]
    assert parser.finish() == []


def test_merged_tokens_yield_several_events_from_one_feed() -> None:
    parser = CMLParser()
    assert parser.feed("[CALL] f() [END][CALL] g() [END]\n[TRAP][END]ok") == [
        CallBlock("c1", "f()", "[CALL] f() [END]", True),
        CallBlock("c2", "g()", "[CALL] g() [END]", True),
        TextPiece("\n"),
        TrapMarker(),
        TextPiece("ok"),
    ]
    assert not parser.in_critical_section


def test_marker_fused_to_a_word_and_to_a_newline() -> None:
    parser = CMLParser()
    assert parser.feed("weather[") == [TextPiece("weather")]
    assert parser.feed("CALL] f() [END]\nNext") == [
        CallBlock("c1", "f()", "[CALL] f() [END]", True),
        TextPiece("\nNext"),
    ]


def test_text_is_emitted_as_soon_as_it_cannot_start_a_marker() -> None:
    parser = CMLParser()
    assert parser.feed("a [") == [TextPiece("a ")]
    assert parser.in_critical_section
    assert parser.feed("1]") == [TextPiece("[1]")]
    assert not parser.in_critical_section
    assert parser.feed("[CA") == []
    assert parser.feed("t") == [TextPiece("[CAt")]
    assert parser.feed("[[CAL") == [TextPiece("[")]
    assert parser.feed("") == []
    assert parser.finish() == [TextPiece("[CAL")]
    assert not parser.in_critical_section


# -- property tests ------------------------------------------------------------------------------

_SPACES = st.sampled_from(["", " ", "  ", "\n", " \n "])
# Text that can never form a marker: none of the letters that follow "[" in a marker.
_PLAIN_TEXT = st.text(alphabet="ab xyz.,!?[]()\n\t1é", max_size=12)
_LITERALS = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(blacklist_characters="[", blacklist_categories=["Cs"]), max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_PLAIN_TEXT, inner, max_size=3),
    max_leaves=6,
)  # fmt: skip
_ARG_NAMES = st.from_regex(r"[a-z_][a-z0-9_]{0,6}", fullmatch=True)


@st.composite
def transcripts(draw: st.DrawFn) -> tuple[str, str, list[ParseEvent]]:
    """A valid transcript, the text outside markers, and the non-text events it must yield."""
    parts: list[str] = []
    text: list[str] = []
    expected: list[ParseEvent] = []
    generated = 0
    for index in range(draw(st.integers(0, 6))):
        kind = draw(st.sampled_from(["text", "call", "anon", "trap"]))
        if kind == "text":
            piece = draw(_PLAIN_TEXT)
            parts.append(piece)
            text.append(piece)
            continue
        if kind == "trap":
            raw = f"[TRAP]{draw(_SPACES)}[END]"
            parts.append(raw)
            expected.append(TrapMarker(raw))
            continue
        name = draw(st.sampled_from(["get_weather", "spotify.play", "f"]))
        body = format_call_body(name, draw(st.dictionaries(_ARG_NAMES, _LITERALS, max_size=3)))
        s1, s2, s3 = draw(_SPACES), draw(_SPACES), draw(_SPACES)
        if kind == "call":
            call_id = f"job_{index}"
            raw = f"[CALL]{s1}{call_id}{s2}[HEAD]{s3}{body}{draw(_SPACES)}[END]"
            expected.append(CallBlock(call_id, body, raw, False))
        else:
            generated += 1
            raw = f"[CALL]{s1}{body}{s2}[END]"
            expected.append(CallBlock(f"c{generated}", body, raw, True))
        parts.append(raw)
    return "".join(parts), "".join(text), expected


def split(draw: Callable[[st.SearchStrategy[list[int]]], list[int]], text: str) -> list[str]:
    cuts = sorted(draw(st.lists(st.integers(0, len(text)), max_size=len(text) + 1)))
    bounds = [0, *cuts, len(text)]
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(transcript=transcripts(), data=st.data())
def test_any_token_split_yields_the_same_events(
    transcript: tuple[str, str, list[ParseEvent]], data: st.DataObject
) -> None:
    whole, text, expected = transcript
    at_once = run([whole])
    assert text_of(at_once) == text
    assert non_text(at_once) == expected
    pieces = split(data.draw, whole)
    streamed = run(pieces)
    assert text_of(streamed) == text
    assert non_text(streamed) == expected
    per_char = run(list(whole))
    assert non_text(per_char) == expected
    assert text_of(per_char) == text


_GARBAGE = st.lists(
    st.sampled_from(
        [*MARKERS, "[", "]", "][", "]\n", "CALL", "C", "ALL", "[CA", "[EN", "D]", "HEAD]", "TRAP",
         "c1", "c2", "1c", " ", "\n", "f(x=1)", "x", "[call]", "INTR]", "END"]
    )
    | st.text(max_size=4),
    max_size=30,
).map("".join)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(garbage=_GARBAGE, data=st.data())
def test_garbage_never_raises_and_every_character_is_accounted_for(
    garbage: str, data: st.DataObject
) -> None:
    parser = CMLParser()
    events: list[ParseEvent] = []
    fed = ""
    for piece in split(data.draw, garbage):
        events += parser.feed(piece)
        fed += piece
        emitted = reconstruct(events)
        assert fed.startswith(emitted)
        # Whatever is not emitted yet is exactly what the parser holds in a critical section.
        assert parser.in_critical_section == (len(emitted) < len(fed))
    events += parser.finish()
    assert not parser.in_critical_section
    assert reconstruct(events) == garbage
    assert all(e.text for e in events if isinstance(e, TextPiece))
    assert non_text(events) == non_text(run([garbage]))
    ids = [c.call_id for c in calls(events)]
    assert len(ids) == len(set(ids))
    assert all(call_id.isidentifier() for call_id in ids)


def test_many_brackets_in_one_chunk_parse_in_linear_time() -> None:
    # 400,000 "[" once cost 5 s (a buffer slice per "["): now one pass. Same events either way.
    parser = CMLParser()
    events = [*parser.feed("[" * 400_000 + "[CALL] c1 [HEAD] f() [END]"), *parser.finish()]
    text = "".join(e.text for e in events if isinstance(e, TextPiece))
    blocks = [e for e in events if isinstance(e, CallBlock)]
    assert text == "[" * 400_000 and [b.call_id for b in blocks] == ["c1"]
