"""The jobs of the worker-mode page (web/worker.html). The worker's script (worker_engine.py)
registers them on the engine in the worker; the page registers the very same jobs on an engine in
the page (local mode), to show the difference a CPU-bound step makes to the page.

``busy-steps``: ``{"steps": 1..50, "seconds": 0..30, "cpu": bool}``; each step either waits
(``asyncio.sleep``) or computes (pure Python arithmetic, holding its thread) for ``seconds``.
``napper``: one step, a durable ``step.sleep`` of ``seconds``, one more step.
"""

import asyncio
import time

import stepstone

#: Which tab's engine runs these, and where in it: "worker" or "page" (set by register()).
WHERE = {"tab": "?", "place": "?"}


def check_input(payload):
    if not isinstance(payload, dict):
        raise ValueError('expected an object like {"steps": 5, "seconds": 1, "cpu": true}')
    unknown = sorted(set(payload) - {"steps", "seconds", "cpu"})
    if unknown:
        raise ValueError(f"unknown field(s): {', '.join(unknown)}")
    steps, seconds, cpu = payload.get("steps", 5), payload.get("seconds", 1.0), payload.get("cpu", False)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= 50:
        raise ValueError(f"steps must be a whole number from 1 to 50, not {steps!r}")
    if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds <= 30:
        raise ValueError(f"seconds per step must be a number from 0 to 30, not {seconds!r}")
    if not isinstance(cpu, bool):
        raise ValueError(f"cpu must be true or false, not {cpu!r}")
    return {"steps": steps, "seconds": float(seconds), "cpu": cpu}


def burn(seconds):
    """Hold the thread for ``seconds`` with pure Python arithmetic; returns how many rounds."""
    end = time.perf_counter() + seconds
    rounds, x = 0, 0
    while time.perf_counter() < end:
        for i in range(2000):
            x = (x * 31 + i) % 1_000_003
        rounds += 1
    return rounds


@stepstone.job("busy-steps", version="1", input=check_input)
async def busy_steps(step, payload):
    n, seconds, cpu = payload["steps"], payload["seconds"], payload["cpu"]
    tab, place = WHERE["tab"], WHERE["place"]
    step.log.info(f"execution started in tab {tab} ({place})", tab=tab, place=place)
    for i in range(1, n + 1):

        async def work(i=i):
            if cpu:
                rounds = burn(seconds)
            else:
                await asyncio.sleep(seconds)
                rounds = 0
            step.log.info(f"step {i} of {n} done in tab {tab} ({place})", tab=tab, place=place, index=i)
            step.progress(i, n, f"step {i} of {n}")
            return {"step": i, "tab": tab, "place": place, "rounds": rounds}

        await step.run(f"step-{i}", work)
    return {"steps": n, "finished_in_tab": tab, "place": place}


@stepstone.job("napper", version="1")
async def napper(step, payload):
    tab = WHERE["tab"]

    def before():
        step.log.info(f"before the nap, in tab {tab}", tab=tab)
        return {"tab": tab}

    first = await step.run("before", before)  # a replay gets the recorded result: the first tab's
    await step.sleep("nap", float((payload or {}).get("seconds", 3)))
    after = await step.run("after", lambda: {"tab": WHERE["tab"]})
    return {"before": first["tab"], "after": after["tab"]}


def register(engine, tab, place):
    WHERE.update(tab=tab, place=place)
    return engine.register(busy_steps), engine.register(napper)
