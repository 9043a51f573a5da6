"""The worker's script for web/worker.html (worker mode): the engine lives here, in a dedicated
Web Worker, and the page drives it through stepstone.browser.worker.start_worker.

/stepstone-worker.mjs runs this file after loading Pyodide and the stepstone wheel, with
worker_jobs.py fetched beside it. Parameters (from the page): ``store`` (default
``opfs://stepstone-worker``) and ``tab`` (this tab's id, the engine's lease owner).
"""

import stepstone
import worker_jobs
from stepstone.browser.worker import serve, worker_params

params = worker_params()
store = params.get("store") or "opfs://stepstone-worker"
tab = params.get("tab") or "?"

engine = stepstone.create_engine(store, owner=f"tab-{tab}")
worker_jobs.register(engine, tab, "worker")
await serve(engine, tab=tab)  # noqa: F704 - the bootstrap runs this file with top-level await
