// The stepstone worker bootstrap (worker mode): a dedicated module Worker that loads this site's
// Pyodide and the stepstone wheel, then runs the page's worker script, which registers jobs on an
// engine and calls `await stepstone.browser.worker.serve(engine)`.
//
//   new Worker("/stepstone-worker.mjs?script=/my_jobs.py&db=my-app", { type: "module" })
//
// Query: `script` (required) the Python file to run (top-level await allowed); `module` (repeatable)
// Python files fetched into /home/pyodide first, so the script can import them; anything else is
// available to the script as stepstone.browser.worker.worker_params().
//
// The page and the worker exchange JSON text (stepstone/browser/_rpc.py). Until the script listens,
// the page's messages are queued here; if the worker cannot start, this file answers them with the
// reason (`boot-error`), so the page's start_worker() raises it instead of waiting for ever.
// Nothing is fetched from another origin: the loader's URL (Pyodide and the stepstone zip) comes from
// /stepstone-config.json.

const params = new URL(self.location.href).searchParams;
const script = params.get("script");
const queue = [];
let handler = null;
let failure = null;

function post(text) {
  self.postMessage(text);
}

function refuse(text) {
  let message;
  try {
    message = JSON.parse(text);
  } catch {
    return;
  }
  if (message.k === "hello") post(JSON.stringify({ k: "boot-error", e: failure }));
  else if (message.id !== undefined) post(JSON.stringify({ k: "err", id: message.id, e: failure }));
}

self.onmessage = (event) => {
  if (typeof event.data !== "string") return;
  if (handler) handler(event.data);
  else if (failure) refuse(event.data);
  else queue.push(event.data);
};

self.stepstone = {
  params: Object.fromEntries(params),
  // serve() hands its handler over here: queued messages first, then every new one
  listen(fn) {
    handler = fn;
    for (const text of queue.splice(0)) fn(text);
  },
  post,
};

function describe(error) {
  // a Python exception arrives as a PythonError: its type, and the last line of its traceback
  if (error && error.type && typeof error.message === "string") {
    const lines = error.message.trim().split("\n");
    const last = lines[lines.length - 1] || "";
    const prefix = `${error.type}: `;
    return { type: error.type, message: last.startsWith(prefix) ? last.slice(prefix.length) : last, attrs: {} };
  }
  return { type: "EngineNotStarted", message: `the stepstone worker could not start: ${error}`, attrs: {} };
}

function fail(error) {
  failure = error;
  handler = null;
  console.warn(`stepstone worker (${script}): ${error.type}: ${error.message}`);
  for (const text of queue.splice(0)) refuse(text);
}

async function text(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`GET ${url} answered ${response.status}`);
  return response.text();
}

try {
  if (!script) throw new Error("no ?script= given: which Python file should this worker run?");
  // the page's files first: a wrong URL fails at once, not after Pyodide has booted
  const code = await text(script);
  const modules = await Promise.all(params.getAll("module").map(async (url) => [url, await text(url)]));
  const config = JSON.parse(await text("/stepstone-config.json"));
  // the site's loader: Pyodide, with stepstone importable from a zip (nothing to unpack)
  const { loadPyodide } = await import(config.loader);
  const pyodide = await loadPyodide();
  pyodide.runPython("import sys, stepstone\nif '/home/pyodide' not in sys.path: sys.path.insert(0, '/home/pyodide')");
  self.pyodide = pyodide; // for debugging from the devtools' worker console
  for (const [url, source] of modules) pyodide.FS.writeFile(`/home/pyodide/${url.split("/").pop()}`, source);
  await pyodide.runPythonAsync(code, { filename: script });
  if (!handler) {
    fail({
      type: "EngineNotStarted",
      message: `the worker script ${script} ended without calling stepstone.browser.worker.serve(engine)`,
      attrs: {},
    });
  }
} catch (error) {
  if (!handler) fail(describe(error));
  else console.error(`stepstone worker (${script}):`, error);
}
