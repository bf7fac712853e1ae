"""The run screen under load: event throughput with coalesced repaints, and event-loop stalls
while the embedded model decodes.

Every figure is measured in this run, with the app headless (``App.run_test``, 120x40):

- ``ui_vs_headless_run_time_ratio``: a ScriptedModel run at 1 ms a token that writes 16 call
  blocks (async tools sleeping 50-200 ms, so they run while it writes) and a long answer
  (``--answer-tokens``, default 1,000, ``--quick`` 400), once with nothing but
  ``async for event in agent.start(..)`` reading it and once in the run screen; wall time from
  start to the run's end, UI over headless, median over the repetitions (interleaved). Close to
  1.0: the UI does not slow the run down;
- ``events_per_s_absorbed``: events folded by ``RunView.feed`` (counted by wrapping it) per second
  of wall time from the run's start to its last event drawn. The run itself cannot go faster than
  its model (``headless_events_per_s``, the same run with no UI, is the ceiling: about 1,000/s at
  1 ms a token), so this says "keeps up" when it is close to that ceiling;
- ``replay_events_per_s``: what the run screen can absorb when events come faster than any model
  writes them: the UI run's own recorded events fed again into a fresh run screen, one per loop
  iteration (``await asyncio.sleep(0)`` between them, as the screen's reader does) with the repaint
  timer drawing as usual, per second of wall time until the last is drawn;
- ``ui_lag_events_max``: the largest backlog seen, at each ``feed``, between the events the run's
  bus had published (the run handle's history) and the events fed to the view;
- ``repaints_per_s``: the view's timer repaints (its ``_draw``, wrapped) per second of the run:
  they coalesce events, at most ``REPAINT_HZ`` (20) a second, fewer when a repaint is dear (the
  view keeps its repaints under ``UI_LOOP_SHARE`` of the loop's time); ``draw_ms_mean`` /
  ``draw_ms_max``: the synchronous widget updates of one repaint (the Markdown appends and
  mounts it starts, and Textual's relayout and render, come after); ``relayouts_per_s``:
  Textual's relayouts of the screen (its ``screen_layout_refresh_signal``), what a repaint
  costs most; ``feed_us_mean``: one fold; ``draw_share_of_ui_run``: the time inside the draws
  over the UI run's wall time; ``ui_loop_cpu_s`` / ``headless_loop_cpu_s``: the event loop
  thread's CPU time during the UI run and the headless one (less noisy than wall time on a
  shared machine: what the UI costs the loop is the difference);
- ``scripted_event_loop_stall_max_ms``: the worst overshoot of a 5 ms heartbeat during the
  scripted UI runs (repaints run on the loop, so a slow one shows here);
- ``event_loop_stall_max_ms`` / ``event_loop_stall_p99_ms``: the same heartbeat while the real
  embedded model (SmolLM2-135M, ``TransformersModel.load()``, decoding in its worker thread)
  answers in the run screen with ``max_tokens`` 48 (``--quick`` 24); with ``embedded_tok_per_s``
  its decode rate there, ``idle_event_loop_stall_max_ms`` the heartbeat in the idle app first
  (the machine's own noise), ``headless_event_loop_stall_max_ms`` the heartbeat during the same
  run with no UI (the decode thread's own share) and ``embedded_ui_vs_headless_run_time_ratio``
  that run's wall time in the UI over without it. Skipped, with a message, if the model cannot load.

Traces are off (``tracer=False``) and ``COUNTERPOINT_TRACES_DB`` points at a temporary file.

Raise ``--answer-tokens`` (e.g. 2000) for a longer transcript.

Run: ``python bench/tui.py [--quick] [--reps N] [--answer-tokens N] [--no-model]``; the last
line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault(
    "COUNTERPOINT_TRACES_DB", str(Path(tempfile.mkdtemp(prefix="cp-bench-tui-")) / "traces.db")
)

from counterpoint.agents.agent import Agent
from counterpoint.runtime.backends.base import SamplingParams
from counterpoint.runtime.session import Limits
from counterpoint.testing.scripted import ScriptedModel, scripted_tokens
from counterpoint.tools.tool import tool
from counterpoint.tui.app import CounterpointApp
from counterpoint.tui.run_screen import REPAINT_HZ, RunScreen

SIZE = (120, 40)
N_CALLS = 16
TOKEN_TIME_S = 0.001
HEARTBEAT_S = 0.005
PROSE = (
    "the runtime streams tokens while tools run so the answer keeps growing and every call "
    "block changes state as results arrive and are injected back into the model context"
)


@tool
async def work(n: int) -> dict[str, int]:
    """Does a little work.

    Args:
        n: which piece.
    """
    await asyncio.sleep(0.05 + 0.01 * n)
    return {"n": n, "square": n * n}


def script(answer_tokens: int) -> list[str]:
    """16 call blocks with prose between them, a long answer, then a trap and a short ending."""
    head = []
    for i in range(N_CALLS):
        head.append(f"[CALL] c{i} [HEAD] work(n={i}) [END] Piece {i} is under way.\n")
    vocab, words = PROSE.split(), []
    for i in range(answer_tokens):
        words.append(vocab[i % len(vocab)])
        if i % 60 == 59:
            words.append("\n\n")
    answer = " ".join(words).replace(" \n\n ", "\n\n")
    return ["".join(head) + answer + "\n[TRAP][END]", "All sixteen pieces are done."]


def scripted_agent(parts: list[str]) -> Agent:
    cap = sum(len(scripted_tokens(p)) for p in parts) + 512
    return Agent(
        "bench-tui",
        "Answer.",
        tools=[work],
        model=ScriptedModel(parts, token_time_s=TOKEN_TIME_S),
        mode="async",
        params=SamplingParams(max_tokens=cap),
        limits=Limits(max_tokens=cap),
        tracer=False,
    )


class Heartbeat:
    """Sleeps ``HEARTBEAT_S`` again and again on the loop; records each overshoot (a stall)."""

    def __init__(self) -> None:
        self.overshoots: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _beat(self) -> None:
        start = time.perf_counter()
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(HEARTBEAT_S)
            self.overshoots.append(time.perf_counter() - t0 - HEARTBEAT_S)
            if self.overshoots[-1] >= max(self.overshoots):
                self.worst_at_s = t0 - start

    worst_at_s = 0.0
    """When the worst stall began, in seconds since the heartbeat started."""

    def __enter__(self) -> Heartbeat:
        self._task = asyncio.get_running_loop().create_task(self._beat())
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._task is not None:
            self._task.cancel()

    def max_ms(self) -> float:
        return max(self.overshoots, default=0.0) * 1000

    def p99_ms(self) -> float:
        if len(self.overshoots) < 2:
            return self.max_ms()
        return statistics.quantiles(self.overshoots, n=100)[98] * 1000


class Probe:
    """Wraps the view's ``feed`` and its repaints' ``_draw`` on one screen, and counts the
    screen's relayouts: counts, times and the backlog."""

    def __init__(self, screen: RunScreen) -> None:
        self.screen = screen
        self.fed = 0
        self.feed_s = 0.0
        self.draws: list[float] = []
        self.relayouts = 0
        self.lag_max = 0
        view = screen.view
        feed, draw = view.feed, view._draw

        def fed(event: Any) -> None:
            t0 = time.perf_counter()
            feed(event)
            self.feed_s += time.perf_counter() - t0
            self.fed += 1
            handle = screen.handle
            if handle is not None:
                self.lag_max = max(self.lag_max, len(handle._history) - self.fed)

        def drawn(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return draw(*args, **kwargs)
            finally:
                self.draws.append(time.perf_counter() - t0)

        def laid_out(_screen: Any) -> None:
            self.relayouts += 1

        view.feed = fed  # type: ignore[method-assign]
        view._draw = drawn  # type: ignore[method-assign]
        screen.screen_layout_refresh_signal.subscribe(screen, laid_out, immediate=True)


async def headless_run(parts: list[str], prompt: str) -> tuple[float, int, float]:
    """Wall time of the run read by a bare ``async for``, its event count, and the loop
    thread's CPU time in it."""
    agent = scripted_agent(parts)
    t0, cpu0 = time.perf_counter(), time.thread_time()
    handle = agent.start(prompt)
    n = 0
    async for _event in handle:
        n += 1
    await handle.result()
    return time.perf_counter() - t0, n, time.thread_time() - cpu0


async def ui_run(agent: Agent, prompt: str, heartbeat: Heartbeat | None = None) -> dict[str, Any]:
    """One run in the headless app's run screen; its wall times and the probe's figures."""
    app = CounterpointApp(agent)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        probe = Probe(screen)
        beat = heartbeat or Heartbeat()
        with beat:
            t0, cpu0 = time.perf_counter(), time.thread_time()
            screen.start_run(prompt)
            assert screen.handle is not None
            result = await screen.handle.result()
            t_run = time.perf_counter() - t0
            repaints, relayouts = len(probe.draws), probe.relayouts
            await screen.wait_run()
            t_drawn = time.perf_counter() - t0
            cpu = time.thread_time() - cpu0
        await pilot.pause()
        view = screen.view
        if view.state.status != result.status:
            raise SystemExit(f"the screen says {view.state.status!r}, the run {result.status!r}")
        emitted = len(screen.handle._history)
        if probe.fed != emitted:
            raise SystemExit(f"the view absorbed {probe.fed} of {emitted} events")
        return {
            "run_s": t_run,
            "drawn_s": t_drawn,
            "events": probe.fed,
            "lag_max": probe.lag_max,
            "repaints": repaints,
            "relayouts": relayouts,
            "draw_ms_mean": statistics.mean(probe.draws) * 1000,
            "draw_ms_max": max(probe.draws) * 1000,
            "feed_us_mean": probe.feed_s / probe.fed * 1e6,
            "stall_max_ms": beat.max_ms(),
            "draw_share": sum(probe.draws[:repaints]) / t_run,
            "cpu_s": cpu,
            "tokens_out": result.usage.output_tokens,
            "calls_done": view.state.calls_done,
            "history": list(screen.handle._history),
        }


async def replay(events: list[Any]) -> float:
    """Events per second a fresh run screen absorbs when fed ``events`` back to back."""
    app = CounterpointApp(None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, RunScreen)
        view = screen.view
        t0 = time.perf_counter()
        for event in events:
            view.feed(event)
            await asyncio.sleep(0)
        await view.flush()
        elapsed = time.perf_counter() - t0
        await pilot.pause()
        if view.state.status != events[-1].status:
            raise SystemExit(f"the replay ended {view.state.status!r}")
    return len(events) / elapsed


async def throughput(reps: int, answer_tokens: int) -> dict[str, Any]:
    parts = script(answer_tokens)
    prompt = "Do the sixteen pieces and explain."
    await headless_run(parts, prompt)  # warm-up: imports, first-run costs
    await ui_run(scripted_agent(script(40)), prompt)  # and the app's
    ratios, rates, runs, heads, replays, cpus = [], [], [], [], [], []
    for rep in range(reps):
        order = ("headless", "ui") if rep % 2 == 0 else ("ui", "headless")
        for kind in order:
            if kind == "headless":
                t_head, n_head, cpu_head = await headless_run(parts, prompt)
            else:
                ui = await ui_run(scripted_agent(parts), prompt)
        if abs(ui["events"] - n_head) > N_CALLS:  # results that land together share an interrupt
            raise SystemExit(f"the UI run had {ui['events']} events, headless {n_head}")
        if ui["calls_done"] != N_CALLS:
            raise SystemExit(f"{ui['calls_done']} calls done of {N_CALLS}")
        ratio = ui["run_s"] / t_head
        rate = ui["events"] / ui["drawn_s"]
        ratios.append(ratio)
        rates.append(rate)
        runs.append(ui)
        heads.append(n_head / t_head)
        cpus.append((ui["cpu_s"], cpu_head))
        replays.append(await replay(ui["history"]))
        print(
            f"rep {rep}: {n_head} events, {ui['tokens_out']} tokens; headless {t_head:.3f} s, "
            f"UI {ui['run_s']:.3f} s (drawn {ui['drawn_s']:.3f} s), ratio {ratio:.3f}; "
            f"{rate:.0f} events/s absorbed, backlog max {ui['lag_max']}, "
            f"{ui['repaints'] / ui['run_s']:.1f} repaints/s "
            f"(draw {ui['draw_ms_mean']:.1f} ms mean, {ui['draw_ms_max']:.1f} max), "
            f"{ui['relayouts'] / ui['run_s']:.1f} relayouts/s, "
            f"feed {ui['feed_us_mean']:.0f} us, loop stall max {ui['stall_max_ms']:.1f} ms; "
            f"loop CPU {ui['cpu_s']:.2f} s (headless {cpu_head:.2f} s); "
            f"replayed at {replays[-1]:.0f} events/s"
        )
    return {
        "ui_vs_headless_run_time_ratio": round(statistics.median(ratios), 3),
        "ui_vs_headless_run_time_ratio_max": round(max(ratios), 3),
        "events_per_s_absorbed": round(statistics.median(rates)),
        "headless_events_per_s": round(statistics.median(heads)),
        "replay_events_per_s": round(statistics.median(replays)),
        "events_per_run": runs[0]["events"],
        "ui_lag_events_max": max(r["lag_max"] for r in runs),
        "repaints_per_s": round(max(r["repaints"] / r["run_s"] for r in runs), 1),
        "repaint_hz_cap": REPAINT_HZ,
        "relayouts_per_s": round(max(r["relayouts"] / r["run_s"] for r in runs), 1),
        "draw_ms_mean": round(statistics.mean(r["draw_ms_mean"] for r in runs), 2),
        "draw_ms_max": round(max(r["draw_ms_max"] for r in runs), 2),
        "feed_us_mean": round(statistics.mean(r["feed_us_mean"] for r in runs), 1),
        "draw_share_of_ui_run": round(statistics.mean(r["draw_share"] for r in runs), 3),
        "ui_loop_cpu_s": round(statistics.median(c[0] for c in cpus), 3),
        "headless_loop_cpu_s": round(statistics.median(c[1] for c in cpus), 3),
        "scripted_event_loop_stall_max_ms": round(max(r["stall_max_ms"] for r in runs), 2),
        "reps": reps,
    }


def load_embedded() -> Callable[[], Any] | None:
    try:
        from counterpoint.runtime.backends.transformers import TransformersModel

        t0 = time.perf_counter()
        model = TransformersModel.load()
        print(f"embedded model {model.name} loaded in {time.perf_counter() - t0:.1f} s")
        return lambda: model
    except Exception as exc:  # no weights, no torch: the part is skipped
        print(f"skipping the embedded-model stall check: the model did not load ({exc!r})")
        return None


async def embedded_stalls(max_tokens: int) -> dict[str, float]:
    loaded = load_embedded()
    if loaded is None:
        return {}
    model = loaded()
    agent = Agent(
        "bench-tui-embedded",
        "You are a helpful assistant. Answer briefly.",
        model=model,
        mode="async",
        params=SamplingParams(max_tokens=max_tokens),
        limits=Limits(max_tokens=max_tokens),
        tracer=False,
    )
    prompt = "Write a short paragraph about the sea."
    warm = agent.replace(params=SamplingParams(max_tokens=4), limits=Limits(max_tokens=4))
    await warm.run(prompt)  # warm-up: the first forward passes
    app = CounterpointApp(None)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.pause()
        with Heartbeat() as idle:
            await asyncio.sleep(1.0)
    print(f"idle app: loop stall max {idle.max_ms():.1f} ms")
    with Heartbeat() as bare:
        t0 = time.perf_counter()
        bare_result = await agent.run(prompt)
        bare_s = time.perf_counter() - t0
    print(
        f"embedded run without UI: {bare_result.usage.output_tokens} tokens in {bare_s:.2f} s, "
        f"loop stall max {bare.max_ms():.1f} ms, p99 {bare.p99_ms():.1f} ms"
    )
    beat = Heartbeat()
    ui = await ui_run(agent, prompt, beat)
    tok_s = ui["tokens_out"] / ui["run_s"]
    print(
        f"embedded run in the UI: {ui['tokens_out']} tokens in {ui['run_s']:.2f} s "
        f"({tok_s:.1f} tok/s), {len(beat.overshoots)} beats, "
        f"loop stall max {beat.max_ms():.1f} ms (at {beat.worst_at_s:.2f} s), "
        f"p99 {beat.p99_ms():.1f} ms; "
        f"{ui['repaints'] / ui['run_s']:.1f} repaints/s"
    )
    return {
        "event_loop_stall_max_ms": round(beat.max_ms(), 2),
        "event_loop_stall_p99_ms": round(beat.p99_ms(), 2),
        "idle_event_loop_stall_max_ms": round(idle.max_ms(), 2),
        "headless_event_loop_stall_max_ms": round(bare.max_ms(), 2),
        "embedded_ui_vs_headless_run_time_ratio": round(ui["run_s"] / bare_s, 3),
        "embedded_tok_per_s": round(tok_s, 1),
        "embedded_tokens": ui["tokens_out"],
    }


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    reps = args.reps if args.reps is not None else (1 if args.quick else 2)
    answer_tokens = args.answer_tokens or (400 if args.quick else 1000)
    result = await throughput(reps, answer_tokens)
    if not args.no_model:
        result.update(await embedded_stalls(24 if args.quick else 48))
    return result


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a shorter answer, 1 repetition")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 2)")
    parser.add_argument(
        "--answer-tokens", type=int, default=None, help="answer length (default 1000)"
    )
    parser.add_argument("--no-model", action="store_true", help="skip the embedded-model part")
    args = parser.parse_args(argv)
    result = asyncio.run(main_async(args))
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
