"""Pilot tests of the run screen on ScriptedModel."""

from __future__ import annotations

import asyncio

from textual.widgets import Input, Markdown

from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.run_screen import CallBlock, RunScreen
from tests.tui._fixtures import TWO_CALLS, agent


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
