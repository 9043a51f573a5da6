"""SIGKILL real worker processes mid-step and between steps; a fresh process finishes every run."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from . import helpers

STEPS = 10
RUNS = 4


def test_resumes_after_sigkill_mid_step_and_between_steps(tmp_path: Path) -> None:
    db, side = tmp_path / "jobs.db", tmp_path / "side.txt"
    killed: set[int] = set()
    # stale_threshold is 60 s: a restart only resumes in time because the dead owner's file lock
    # proves it gone, so these phases would time out if liveness did not work.
    proc = helpers.start(db, side, "--trigger", str(RUNS), "--delay", "0.04")
    plan = [(5, 0.0), (12, 0.02), (19, 0.0), (26, 0.03), (31, 0.0)]
    for count, extra in plan:
        helpers.wait_for_lines(side, count)
        time.sleep(extra)  # 0: right after a step body (between steps); >0: inside the next body
        helpers.kill(proc)
        killed.add(proc.pid)
        proc = helpers.start(db, side, "--delay", "0.04")
    helpers.finish(proc)

    runs, events, steps = helpers.read_db(db)
    assert len(runs) == RUNS
    for run_id, status, output, last_seq in runs:
        assert status == "completed", (run_id, status)
        assert json.loads(output) == {"steps": STEPS}
        log = events[run_id]
        assert [seq for seq, _, _ in log] == list(range(last_seq + 1)), "no gap, no duplicate"
        assert log[-1][1] == "run:complete" and sum(t == "run:complete" for _, t, _ in log) == 1
        completes = [json.loads(d)["name"] for _, t, d in log if t == "step:complete"]
        assert sorted(completes) == sorted(f"step-{i}" for i in range(STEPS)), "each step committed once"
        assert set(steps[run_id]) == {f"step-{i}" for i in range(STEPS)}

    # Each committed step body ran once; a body ran again only when the process that ran it was
    # killed before committing it, and then its committed result comes from the later process.
    by_step: dict[tuple[str, int], list[int]] = {}
    for run_id, step, pid in helpers.lines(side):
        by_step.setdefault((run_id, step), []).append(pid)
    reruns = 0
    for (run_id, step), pids in by_step.items():
        committed_pid = steps[run_id][f"step-{step}"]["pid"]
        assert pids.count(committed_pid) == 1, f"{run_id} step {step} ran twice in one process"
        assert pids[-1] == committed_pid, "the committed result is the last execution"
        for pid in pids[:-1]:
            assert pid in killed, f"step re-ran although pid {pid} was not killed"
            reruns += 1
    assert len(by_step) == RUNS * STEPS
    assert reruns <= len(killed) * 2, "at most one in-flight step per killed execution slot"


def test_sigstopped_worker_is_fenced_after_takeover(tmp_path: Path) -> None:
    """Two workers, one paused (SIGSTOP) past its lease; the other takes over; the first's late
    writes are refused and nothing it writes appears."""
    db, side = tmp_path / "jobs.db", tmp_path / "side.txt"
    first = helpers.start(
        db, side, "--trigger", "1", "--delay", "0.3", "--stale", "1.0", "--heartbeat", "0.2", "--blocking"
    )
    helpers.wait_for_lines(side, 2)
    time.sleep(0.1)
    os.kill(first.pid, signal.SIGSTOP)  # paused inside step 2's body, which holds the thread
    try:
        second = helpers.start(db, side, "--delay", "0.01", "--stale", "1.0", "--heartbeat", "0.2")
        helpers.finish(second)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    helpers.finish(first)  # it wakes, finishes its step body, is refused, and exits

    runs, events, steps = helpers.read_db(db)
    ((run_id, status, _output, last_seq),) = runs
    assert status == "completed"
    log = events[run_id]
    assert [seq for seq, _, _ in log] == list(range(last_seq + 1))
    assert log[-1][1] == "run:complete"
    starts = [json.loads(d)["owner"] for _, t, d in log if t == "run:start"]
    assert len(starts) == 2 and starts[0] != starts[1]
    completes = [json.loads(d)["name"] for _, t, d in log if t == "step:complete"]
    assert sorted(completes) == sorted(f"step-{i}" for i in range(STEPS)), "the zombie's commit was refused"
    owners = [steps[run_id][f"step-{i}"]["pid"] for i in range(STEPS)]
    k = owners.index(second.pid)
    assert k >= 1 and owners == [first.pid] * k + [second.pid] * (STEPS - k), owners
    late = [step for _, step, pid in helpers.lines(side) if pid == first.pid and step >= k]
    assert late == [k], "the paused worker finished its step body after waking (then was refused)"
