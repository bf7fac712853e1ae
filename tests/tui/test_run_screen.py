"""Pilot tests of the run screen on ScriptedModel, and of what its repaints redraw."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rich.text import Text
from textual.app import App, ComposeResult
from textual.widgets import Input, Markdown, Static

from counterpoint.core.events import (
    BaseEvent,
    CallFinished,
    CallStarted,
    CallWritten,
    Done,
    InterruptInjected,
    RunStarted,
    TokenEvent,
    TrapEvent,
    Usage,
    UserMessage,
)
from counterpoint.testing.scripted import scripted_tokens
from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.run_screen import CallBlock, RunScreen, RunView
from tests.tui._fixtures import TWO_CALLS, agent, fixed_events


async def _submit(app: CounterpointApp, pilot: object, text: str, *, starts: bool = True) -> None:
    screen = app.screen
    assert isinstance(screen, RunScreen)
    before = screen.handle
    box = screen.query_one("#prompt", Input)
    box.value = text
    await box.action_submit()
    if not starts:
        await asyncio.sleep(0.05)
        return
    for _ in range(500):  # the Submitted message is handled on a later tick: wait for the run
        if screen.handle is not before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the prompt started no run")


async def test_two_calls_reach_ok_and_expand() -> None:
    app = CounterpointApp(agent(TWO_CALLS, token_time_s=0.002))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await _submit(app, pilot, "Weather in Paris, time in Tokyo?")
        await screen.wait_run()
        await pilot.pause()
        view = screen.view
        assert view.state.status == "ok"
        blocks = list(screen.query(CallBlock))
        assert [b.status for b in blocks] == ["ok", "ok"]
        assert "[ok " in str(blocks[0].title)
        answer = "".join(seg.shown for seg in view.state.segments)
        assert "Paris is **clear**" in answer and "[CALL]" not in answer
        assert view.state.calls_done == 2
        assert set(view.timeline.model.lanes) == {"decode", "call:c1", "call:c2"}
        assert blocks[0].collapsed
        await pilot.press("ctrl+e")
        await pilot.pause()
        assert not blocks[0].collapsed and not blocks[1].collapsed
        assert any(isinstance(w, Markdown) and w.display for w in screen.query(Markdown))


async def test_cancel_run_marks_calls_cancelled() -> None:
    script = ['[CALL] c1 [HEAD] slow(term="x") [END]\n[TRAP][END]', "never"]
    app = CounterpointApp(agent(script))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await _submit(app, pilot, "go")
        for _ in range(100):
            await asyncio.sleep(0.01)
            if screen.view.state.calls_running:
                break
        assert screen.view.state.calls_running == 1
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        await screen.wait_run()
        await pilot.pause()
        assert screen.view.state.status == "cancelled"
        block = screen.query_one(CallBlock)
        assert block.status in ("cancelled", "unfinished")


async def test_typing_mid_run_sends_a_user_interrupt() -> None:
    script = [
        '[CALL] c1 [HEAD] get_time(city="Rome") [END]\n[TRAP][END]',
        "Done. [TRAP][END]",
        "ok",
    ]
    app = CounterpointApp(agent(script, token_time_s=0.01))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await _submit(app, pilot, "time in Rome?")
        await asyncio.sleep(0.05)
        assert screen.running
        await _submit(app, pilot, "also Paris", starts=False)
        await screen.wait_run()
        await pilot.pause()
        notes = [str(w.render()) for w in screen.query(".user-interrupt")]
        assert any("also Paris" in n for n in notes)
        markers = screen.view.timeline.model.decode.markers
        assert any(m.kind == "user" and m.label == "also Paris" for m in markers)


async def test_quit_mid_run_cancels_cleanly() -> None:
    script = ['[CALL] c1 [HEAD] slow(term="x") [END]\n[TRAP][END]', "never"]
    app = CounterpointApp(agent(script))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await _submit(app, pilot, "go")
        await asyncio.sleep(0.05)
        handle = screen.handle
        assert handle is not None and not handle.done
        await pilot.press("ctrl+q")
        await pilot.pause()
    assert handle.done
    assert screen.view.state.status == "cancelled"


async def test_cancel_one_call_and_the_run_goes_on() -> None:
    script = [
        '[CALL] c1 [HEAD] slow(term="x") [END]\n[CALL] c2 [HEAD] get_weather(city="Oslo") [END]'
        "\n[TRAP][END]",
        "Oslo is clear. [TRAP][END]",
        "The slow one was cancelled.",
    ]
    app = CounterpointApp(agent(script))
    async with app.run_test(size=(100, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, RunScreen)
        await _submit(app, pilot, "go")
        for _ in range(300):
            await asyncio.sleep(0.01)
            if screen.view.state.calls_done == 1:
                break
        assert screen.view.calls["c1"].status == "running"
        await pilot.press("ctrl+k")
        await screen.wait_run()
        await pilot.pause()
        assert screen.view.state.status == "ok"
        assert screen.view.calls["c1"].status == "cancelled"
        assert screen.view.calls["c2"].status == "ok"
        answer = "".join(seg.shown for seg in screen.view.state.segments)
        assert "The slow one was cancelled." in answer


# -- what a repaint redraws (a RunView alone in a small app, a frozen clock) -----------------------


class ViewApp(App[None]):
    def __init__(self, clock: Callable[[], float] = lambda: 1000.0) -> None:
        super().__init__()
        self.view = RunView(clock=clock, id="run-view")

    def compose(self) -> ComposeResult:
        yield self.view


class Updates:
    """Counts the widget updates (Static.update, Markdown.update/append) while it is on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.statics: list[Static] = []
        self.markdowns: list[Markdown] = []
        static_update, md_update, md_append = Static.update, Markdown.update, Markdown.append

        def on_static(widget: Static, *args: Any, **kwargs: Any) -> None:
            self.statics.append(widget)
            static_update(widget, *args, **kwargs)

        def on_markdown(update: Any) -> Any:
            def wrapped(widget: Markdown, markdown: str) -> Any:
                self.markdowns.append(widget)
                return update(widget, markdown)

            return wrapped

        monkeypatch.setattr(Static, "update", on_static)
        monkeypatch.setattr(Markdown, "update", on_markdown(md_update))
        monkeypatch.setattr(Markdown, "append", on_markdown(md_append))

    def clear(self) -> None:
        self.statics.clear()
        self.markdowns.clear()


async def test_a_flush_with_nothing_changed_updates_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = ViewApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.view
        for event in fixed_events():
            if event.t < 1.0 and not isinstance(event, Done):  # running: c1 still going
                view.feed(event)
        view._run_clock0 = 1000.0 - 1.0
        await view.flush()
        await pilot.pause()
        assert view.state.status == "running" and view.calls["c1"].status == "running"
        updates = Updates(monkeypatch)
        for _ in range(3):
            await view.flush()  # the clock is frozen: nothing moved
            view._repaint()
        await pilot.pause()
        assert updates.statics == [] and updates.markdowns == []


async def test_only_the_changed_call_block_is_redrawn(monkeypatch: pytest.MonkeyPatch) -> None:
    app = ViewApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.view
        events = [e for e in fixed_events() if not isinstance(e, Done)]
        first_finish = next(i for i, e in enumerate(events) if isinstance(e, CallFinished))
        for event in events[:first_finish]:
            view.feed(event)
        await view.flush()
        await pilot.pause()
        c1, c2 = view.calls["c1"], view.calls["c2"]
        redraws: list[str] = []
        redraw = CallBlock.redraw

        def counted(block: CallBlock, now: float | None = None) -> bool:
            redraws.append(block.call_id)
            return redraw(block, now)

        monkeypatch.setattr(CallBlock, "redraw", counted)
        updates = Updates(monkeypatch)
        view.feed(events[first_finish])  # c1 finishes
        assert c1.dirty and not c2.dirty
        view._repaint()
        assert redraws == ["c1"]
        assert c1._call_body in updates.statics and c2._call_body not in updates.statics
        assert c1.status == "ok" and "[ok " in str(c1.title) and "[running" in str(c2.title)


async def test_a_collapsed_block_keeps_its_body_hidden() -> None:
    app = ViewApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.view
        events = fixed_events()
        for event in events[:-1]:
            view.feed(event)
        await view.flush()
        await pilot.pause()
        view.feed(events[-1])  # done: redrawn while mounted
        await view.flush()
        await pilot.pause()
        block = view.calls["c1"]
        assert block.collapsed and block.has_class("-collapsed") and block.status == "ok"
        assert not block._call_body.region  # not laid out: hidden
        block.collapsed = False
        await pilot.pause()
        assert block._call_body.region and not block.has_class("-collapsed")


def _many_events(n_tokens: int) -> Iterator[BaseEvent]:
    """A long synthetic run: prose in paragraphs, a call every ~300 tokens finishing ~100 tokens
    later with an interrupt, a user message, a trap, then done."""
    rid, t, index, text = "run-many", 0.0, 0, ""
    yield RunStarted(
        run_id=rid, t=0.0, name="many", model="s", mode="async", prompt="go", wall_time=0.0
    )
    words = [
        "the",
        "answer",
        "streams",
        "while",
        "tools",
        "run",
        "and",
        "results",
        "land",
        "mid",
        "generation",
    ]
    pending: list[tuple[int, str, float]] = []

    def tokens(chunk: str) -> Iterator[BaseEvent]:
        nonlocal t, index, text
        for piece in scripted_tokens(chunk):
            t = round(t + 0.001, 6)
            text += piece
            index += 1
            yield TokenEvent(run_id=rid, t=t, text=piece, token_id=index, index=index)

    for i in range(n_tokens):
        word = words[i % len(words)]
        yield from tokens(f" **{word}**" if i % 37 == 0 else f" {word}")
        if i % 53 == 52:
            yield from tokens("\n\n")
        if i % 300 == 150:
            call_id = f"c{i}"
            raw = f'[CALL] {call_id} [HEAD] get_weather(city="P{i}") [END]'
            yield from tokens(" " + raw)
            args = {"city": f"P{i}"}
            yield CallWritten(
                run_id=rid,
                t=t,
                call_id=call_id,
                name="get_weather",
                arguments=args,
                raw=raw,
                offset=len(text),
            )
            yield CallStarted(run_id=rid, t=t, call_id=call_id, name="get_weather", arguments=args)
            pending.append((i + 100, call_id, t))
        if pending and pending[0][0] == i:
            _, call_id, started = pending.pop(0)
            yield CallFinished(
                run_id=rid,
                t=t,
                call_id=call_id,
                name="get_weather",
                ok=True,
                result=f'{{"sky": "clear {i}"}}',
                started=started,
                duration_s=round(t - started, 6),
            )
            yield InterruptInjected(
                run_id=rid, t=t, call_ids=[call_id], text="...", tokens=9, duration_s=0.0
            )
        if i == n_tokens // 2:
            yield UserMessage(run_id=rid, t=t, text="and say hello")
    yield from tokens(" done.\n[TRAP][END]")
    yield TrapEvent(run_id=rid, t=t, phase="enter", pending=[c for _, c, _ in pending])
    yield from tokens(" Hello.")
    yield Done(
        run_id=rid, t=t, status="ok", text=text, usage=Usage(input_tokens=10, output_tokens=index)
    )


def _screen_state(view: RunView) -> list[Any]:
    """What the view shows, widget by widget, independent of when it was drawn."""
    out: list[Any] = []
    for widget in view.transcript.children:
        if isinstance(widget, CallBlock):
            out.append(("call", str(widget.title), str(widget._shown_body), widget.classes))
        elif isinstance(widget, Markdown):
            blocks = [(type(b).__name__, str(b._content)) for b in widget.children]
            out.append(("markdown", widget.source, widget.display, blocks))
        elif isinstance(widget, Static):
            out.append(("static", str(widget.render())))
    out.append(("timeline", [line.plain for line in view.timeline._lines]))
    shown = view.status_bar._shown
    out.append(("status", shown.plain if isinstance(shown, Text) else None))
    return out


async def _drawn(events: list[BaseEvent], flush_every: int | None) -> list[Any]:
    app = ViewApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.view
        for i, event in enumerate(events):
            view.feed(event)
            if flush_every is not None and i % flush_every == 0:
                await view.flush(full=i % (3 * flush_every) == 0)
        await view.flush()
        for _ in range(20):
            await pilot.pause()
        return _screen_state(view)


async def test_one_flush_after_5000_events_draws_what_many_flushes_draw() -> None:
    events = list(_many_events(4200))
    assert len(events) >= 5000
    once = await _drawn(events, None)
    often = await _drawn(events, 97)
    assert [kind for kind, *_ in once].count("call") == 14
    assert once == often


async def test_feed_mounts_nothing_the_repaint_mounts_in_one_batch() -> None:
    app = ViewApp()
    async with app.run_test(size=(100, 40)) as pilot:
        view = app.view
        before = len(view.transcript.children)
        for event in fixed_events()[:-1]:
            view.feed(event)
        assert len(view.transcript.children) == before  # feed only marks
        assert set(view.calls) == {"c1", "c2"} and view.calls["c2"].status == "failed"
        await view.flush()
        await pilot.pause()
        kinds = [type(w).__name__ for w in view.transcript.children]
        assert kinds.count("CallBlock") == 2 and kinds[0] == "Static"


async def test_feeding_before_mount_is_drawn_once_mounted() -> None:
    view = RunView(clock=lambda: 1000.0, id="run-view")
    for event in fixed_events():
        view.feed(event)  # not mounted yet (another screen feeding a transcript it will show)

    class Late(App[None]):
        def compose(self) -> ComposeResult:
            yield view

    async with Late().run_test(size=(100, 40)) as pilot:
        await view.flush()
        await pilot.pause()
        assert view.state.status == "ok" and len(view.calls) == 2
        assert "Paris is **clear**" in "".join(seg.shown for seg in view.state.segments)


def test_dear_repaints_come_less_often() -> None:
    from counterpoint.tui import run_screen

    view = RunView(clock=lambda: 0.0)
    assert view.repaint_interval == 1 / run_screen.REPAINT_HZ
    view.repaint_cost_s = 0.06  # each repaint costs 60 ms of the loop: at most UI_LOOP_SHARE
    assert view.repaint_interval == pytest.approx(0.06 / run_screen.UI_LOOP_SHARE)
    view.repaint_cost_s = 10.0
    assert view.repaint_interval == 1 / run_screen.MIN_REPAINT_HZ


def _timed_run(call_start: float, call_s: float, resume: float) -> list[BaseEvent]:
    """Tokens every 10 ms from 0 to 0.1 s, one call from ``call_start`` lasting ``call_s``,
    tokens again from ``resume`` for 0.1 s, then done."""
    rid = "run-timed"
    events: list[BaseEvent] = [
        RunStarted(run_id=rid, t=0.0, name="t", model="m", mode="async", prompt="p", wall_time=0)
    ]
    ticks = [round(i * 0.01, 3) for i in range(11)]
    events += [
        TokenEvent(run_id=rid, t=t, text="x", token_id=1, index=i) for i, t in enumerate(ticks)
    ]
    events.append(CallStarted(run_id=rid, t=call_start, call_id="c1", name="slow", arguments={}))
    end = call_start + call_s
    events.append(
        CallFinished(
            run_id=rid,
            t=end,
            call_id="c1",
            name="slow",
            ok=True,
            result="r",
            started=call_start,
            duration_s=call_s,
        )
    )
    later = [round(resume + i * 0.01, 3) for i in range(11)]
    events += [
        TokenEvent(run_id=rid, t=t, text="y", token_id=2, index=11 + i) for i, t in enumerate(later)
    ]
    events.append(Done(run_id=rid, t=later[-1], status="ok", text="", usage=Usage()))
    return events


@pytest.mark.parametrize(
    ("call_start", "resume", "saved"),
    [
        (0.1, 1.1, 0.0),  # synchronous: generation waits for the call, nothing saved
        (0.02, 1.03, 0.07),  # dispatched while the model still wrote: 0.07 s of overlap saved
    ],
)
def test_saved_time_against_the_sync_bound(call_start: float, resume: float, saved: float) -> None:
    view = RunView(clock=lambda: 0.0)
    assert view.saved_s() is None
    for event in _timed_run(call_start, 1.0, resume):
        view.feed(event)
    assert view.saved_s() == pytest.approx(saved, abs=1e-6)
