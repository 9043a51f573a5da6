# Local mode: the job engine runs in this tab and keeps its runs in IndexedDB. Reload the page
# while a run is going: the run carries on, and the steps that had finished are not run again.
import asyncio

import stepstone
from stepstone.hooks import dom, use_job


@stepstone.job("three-steps")
async def three_steps(step, payload):
    for i, name in enumerate(["fetch", "resize", "save"], 1):
        # The step's body logs a line each time it really runs, then "works" for 2 s (log.info
        # returns None, so `or` goes on to the sleep, whose coroutine step.run awaits).
        await step.run(name, lambda: step.log.info(f"{name}: running") or asyncio.sleep(2))
        step.progress(i, 3, f"{name} done")


engine = stepstone.create_engine("indexeddb://examples-local")
engine.register(three_steps)
await engine.init()  # open the database, start the worker: it resumes an unfinished run
job = use_job(engine, three_steps)  # the job's current run, live; its id is kept across reloads
dom.bind(job, lambda job: dom.set_text("status", f"{job.status or 'idle'} {dom.progress_text(job.progress)}"))
dom.bind(job, lambda job: dom.set_text("log", "\n".join(line.message for line in job.logs)))
dom.on("start", "click", lambda event: job.trigger())
