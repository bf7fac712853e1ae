"""Durability: a workflow killed with SIGKILL at several points resumes without running a
finished task twice and without losing one (a real subprocess, a real SQLite file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from counterpoint.agents.workflow.store import WorkflowStore

CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from counterpoint import Agent, ScriptedModel, Task, Workflow

    db, log, run_id, mode = sys.argv[1:5]
    agent = Agent("w", model=ScriptedModel("x"), tracer=False)
    delays = {"a": 0.05, "b": 0.3, "c": 0.1, "d": 0.2, "e": 0.05, "f": 0.15, "g": 0.1, "h": 0.05}
    needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c"], "f": ["d"],
             "g": ["e", "f"], "h": ["g"]}
    wf = Workflow([Task(t, f"do {t}", agent, needs=needs[t]) for t in delays], name="durable")

    def note(line):
        fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
        os.write(fd, (line + "\\n").encode())
        os.fsync(fd)
        os.close(fd)

    async def runner(task, ctx):
        note(f"start {task.id} {os.getpid()}")
        await asyncio.sleep(delays[task.id])
        ups = ",".join(sorted(r for _, r in ctx.upstream))
        note(f"end {task.id} {os.getpid()}")
        return f"{task.id}[{ups}]"

    async def main():
        if mode == "new":
            result = await wf.run(db=db, run_id=run_id, tracer=False, runner=runner)
        else:
            result = await wf.run(db=db, resume=run_id, tracer=False, runner=runner)
        print(result.status)

    asyncio.run(main())
    """
)


def lines(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line.strip()]


def expected(task: str) -> str:
    needs = {"a": [], "b": ["a"], "c": ["a"], "d": ["a"], "e": ["b", "c"], "f": ["d"]}
    needs |= {"g": ["e", "f"], "h": ["g"]}
    return f"{task}[{','.join(sorted(expected(n) for n in needs[task]))}]"


@pytest.mark.slow
@pytest.mark.parametrize("kill_after_ends", [0, 1, 3, 5, 7])
def test_sigkill_then_resume_loses_nothing_and_reruns_nothing_finished(
    tmp_path: Path, kill_after_ends: int
) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    db, log, run_id = tmp_path / "traces.db", tmp_path / "log.txt", f"run{kill_after_ends}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    child = subprocess.Popen(
        [sys.executable, str(script), str(db), str(log), run_id, "new"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entries = lines(log)
        if sum(1 for e in entries if e[0] == "end") >= kill_after_ends and entries:
            break
        if child.poll() is not None:
            pytest.fail(f"the child ended early: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    store = WorkflowStore(db)
    committed = store.load_run(run_id).finished()
    store.close()
    for tid, outcome in committed.items():
        assert outcome.result == expected(tid)  # committed results are whole and right
    first_pid = str(child.pid)

    resumed = subprocess.run(
        [sys.executable, str(script), str(db), str(log), run_id, "resume"],
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    assert resumed.stdout.decode().strip() == "ok"

    entries = lines(log)
    rerun = {e[1] for e in entries if e[0] == "start" and e[2] != first_pid}
    assert not rerun & set(committed), f"finished tasks ran again: {rerun & set(committed)}"
    store = WorkflowStore(db)
    final = store.load_run(run_id)
    store.close()
    assert final.status == "ok" and final.resumes == 1
    assert {t: o.status for t, o in final.outcomes.items()} == dict.fromkeys("abcdefgh", "ok")
    for tid, outcome in final.outcomes.items():
        assert outcome.result == expected(tid)
    # every task ran to its end at least once, and none after its result was committed
    ended = {e[1] for e in entries if e[0] == "end"}
    assert ended == set("abcdefgh")
