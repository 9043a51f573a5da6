"""Worker mode: the engine runs in a dedicated Web Worker, the page drives it. Pyodide only.

In the page::

    from stepstone.browser.worker import start_worker
    from stepstone.hooks import use_job

    jobs = await start_worker("/my_jobs.py", params={"db": "my-app"})
    job = use_job(jobs, "resize")            # the hooks take it where they take an Engine
    await job.trigger({"n": 3})

In the worker (``/my_jobs.py``)::

    import stepstone
    from stepstone.browser.worker import serve, worker_params

    @stepstone.job("resize")
    async def resize(step, payload): ...

    engine = stepstone.create_engine(f"opfs://{worker_params()['db']}")
    engine.register(resize)
    await serve(engine)

See ``docs/browser.md`` (worker mode) for the multi-tab rules and the OPFS store.
"""

from ._worker import WorkerSource, in_worker, serve, start_worker, worker_params

__all__ = ["WorkerSource", "in_worker", "serve", "start_worker", "worker_params"]
