"""DBOS Transact on the same job shapes as bench/steps.py: python bench.py URL RUNS STEPS CONCURRENCY

A workflow of STEPS steps, each a trivial function (``@DBOS.step``), RUNS workflows started and
awaited with at most CONCURRENCY in flight (asyncio workflows, one event loop, as stepstone runs).
Prints one JSON line: the DBOS version and steps/s. URL is the system database (PostgreSQL; the
database is created by DBOS if missing). Runs in bench/dbos/.venv, not in the project's venv.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from importlib.metadata import version

from dbos import DBOS, DBOSConfig


async def main() -> None:
    url, runs, steps, concurrency = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    config: DBOSConfig = {"name": "stepstone-bench", "system_database_url": url, "log_level": "WARNING"}
    DBOS(config=config)

    @DBOS.step()
    async def one(i: int) -> int:
        return i

    @DBOS.workflow()
    async def bench(n: int) -> int:
        total = 0
        for i in range(n):
            total += await one(i)
        return total

    DBOS.launch()
    try:
        warm = await DBOS.start_workflow_async(bench, 1)
        await warm.get_result()
        gate = asyncio.Semaphore(concurrency)

        async def one_run() -> None:
            async with gate:
                handle = await DBOS.start_workflow_async(bench, steps)
                assert await handle.get_result() == sum(range(steps))

        t0 = time.perf_counter()
        await asyncio.gather(*(one_run() for _ in range(runs)))
        seconds = time.perf_counter() - t0
    finally:
        DBOS.destroy()
    print(json.dumps({"version": version("dbos"), "stepsPerSecond": runs * steps / seconds}))


if __name__ == "__main__":
    asyncio.run(main())
