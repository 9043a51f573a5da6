"""Running Python in a dedicated Web Worker of a page, for tests and benchmarks: the worker is a
module script made from a ``blob:`` URL in the page (so the site needs no test files), loads the
site's Pyodide and the stepstone wheel like ``/stepstone-worker.mjs`` does, and runs the code it
is sent. Plain functions, no pytest.
"""

from __future__ import annotations

import json
from typing import Any

from .harness import site_config

_START = """async ([cfg, name]) => {
  const source = `
    const t0 = performance.now();
    const { loadPyodide } = await import(${JSON.stringify(location.origin + cfg.pyodide)});
    const py = await loadPyodide({ indexURL: ${JSON.stringify(location.origin + cfg.pyodideIndexURL)} });
    await py.loadPackage(${JSON.stringify(location.origin + cfg.wheel)});
    py.runPython("import sys, stepstone; sys.path.insert(0, '/home/pyodide')");
    self.pyodide = py;
    self.onmessage = async (event) => {
      const { id, code, file, text } = event.data;
      try {
        if (file) { py.FS.writeFile(file, text); self.postMessage({ id, ok: null }); return; }
        const result = await py.runPythonAsync(code);
        self.postMessage({ id, ok: result === undefined || result === null ? null : String(result) });
      } catch (error) {
        self.postMessage({ id, err: String(error) });
      }
    };
    self.postMessage({ ready: performance.now() - t0 });
  `;
  const url = URL.createObjectURL(new Blob([source], { type: "text/javascript" }));
  const worker = new Worker(url, { type: "module", name });
  window.testWorkers = window.testWorkers || {};
  const ready = await new Promise((resolve, reject) => {
    worker.onerror = (e) => reject(new Error(`the test worker failed: ${e.message}`));
    worker.onmessage = (e) => resolve(e.data.ready);
  });
  let next = 0;
  const waiting = new Map();
  worker.onmessage = (e) => { const done = waiting.get(e.data.id); waiting.delete(e.data.id); done && done(e.data); };
  window.testWorkers[name] = {
    worker,
    send(message) {
      const id = ++next;
      return new Promise((resolve) => { waiting.set(id, resolve); worker.postMessage({ id, ...message }); });
    },
  };
  return ready;
}"""

_RUN = """async ([name, code, ms]) => {
  let timer;
  const late = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Python did not finish within ${ms} ms in worker ${name}`)), ms);
  });
  try {
    const reply = await Promise.race([window.testWorkers[name].send({ code }), late]);
    if (reply.err !== undefined) throw new Error(reply.err);
    return reply.ok;
  } finally {
    clearTimeout(timer);
  }
}"""


def start_worker_python(page: Any, name: str = "w") -> float:
    """Start a worker ``name`` in ``page`` (already on a page of the site) with Pyodide and the
    stepstone wheel; returns its boot time (ms)."""
    return float(page.evaluate(_START, [site_config(), name]))


def run_py_in_worker(page: Any, code: str, timeout: float = 30.0, name: str = "w") -> Any:
    """Run ``code`` in worker ``name``; its last expression must be a JSON string."""
    text = page.evaluate(_RUN, [name, code, int(timeout * 1000)])
    return None if text is None else json.loads(text)


def write_worker_file(page: Any, path: str, text: str, name: str = "w") -> None:
    page.evaluate("([n, file, text]) => window.testWorkers[n].send({ file, text })", [name, path, text])


def stop_worker(page: Any, name: str = "w") -> None:
    page.evaluate("(n) => { window.testWorkers[n].worker.terminate(); delete window.testWorkers[n]; }", name)
