# Server mode: the page drives the stepstone server it came from (`python3 build.py serve` runs the
# demo jobs there). Reload the page mid-run: use_job finds the run again (its id is in localStorage).
from stepstone.client import Client
from stepstone.hooks import dom, use_job

job = use_job(Client("/api"), "demo-steps")  # the job demo-steps of stepstone.demo, on the server
dom.bind(job, lambda job: dom.set_text("status", f"{job.status or 'idle'} {dom.progress_text(job.progress)}"))
dom.bind(job, lambda job: dom.set_text("run", job.current_run_id))
dom.bind(job, lambda job: dom.set_text("error", job.error))  # e.g. the server is unreachable (retrying)
dom.bind(job, lambda job: dom.set_text("log", "\n".join(line.message for line in job.logs)))
dom.on("start", "click", lambda event: job.trigger({"steps": 10, "delay": 1}))
