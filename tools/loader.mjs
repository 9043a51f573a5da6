// stepstone's loadPyodide: Pyodide with stepstone ready to use, in less time than a bare
// loadPyodide() takes. tools/site.py writes it into the site as /stepstone-pyodide.mjs with the
// site's URLs (the import below and the `export const` settings), and pyscript.json names it as
// PyScript's "interpreter".
//
// - The memory snapshot (snapshot/*.snapshot, made by the build in Node with the very runtime files
//   the site serves) is Pyodide's memory once it had started and imported stepstone: restoring it
//   replaces starting Python and importing stepstone. What Python learnt of its environment at
//   start-up is set again for this browser: random's seed, LANG, the time zone. Without a snapshot
//   (a build without node), or if it does not load (another Pyodide build), Pyodide starts as usual.
// - The stepstone zip (its modules with byte code beside them) is written to zipPath, which is on
//   sys.path after site-packages: nothing is unpacked, and a stepstone installed later with
//   micropip wins.
// - PyScript writes its own Python package's sources at every start and imports them; their byte
//   code, compiled by the build, is put where Python looks for it (sys.pycache_prefix).
//   Checked hash-based: a source that differs is compiled as before.
//
// The files are fetched as this module is evaluated; pages call start() from their head so that
// Pyodide boots while PyScript sets itself up. Same exports as pyodide.mjs for PyScript:
// loadPyodide and version.
import { loadPyodide as loadBare, version } from "/vendor/pyodide/pyodide.mjs";

export { version };
// the site's files (tools/site.py writes these)
export const indexURL = "/vendor/pyodide/";
export const stepstoneZip = null;
export const zipPath = null;
export const snapshot = null;
export const pyscriptBytecode = null;

async function get(url) {
  const response = await fetch(url);
  if (!response.ok) {
    throw new Error(`stepstone: GET ${url} answered ${response.status}; rebuild the site (python3 build.py site)`);
  }
  return new Uint8Array(await response.arrayBuffer());
}

// the snapshot file leaves out the image's zero pages (tools/pyodide_build.py sparse())
function unsparse(bytes) {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (new TextDecoder().decode(bytes.subarray(0, 8)) !== "STEPSNP1") throw new Error("not a stepstone snapshot");
  const [length, count] = [view.getUint32(8, true), view.getUint32(12, true)];
  const image = new Uint8Array(length);
  let at = 16 + 8 * count;
  for (let i = 0; i < count; i++) {
    const [offset, size] = [view.getUint32(16 + 8 * i, true), view.getUint32(20 + 8 * i, true)];
    image.set(bytes.subarray(at, at + size), offset);
    at += size;
  }
  return image;
}

const optional = async (url) => (url ? get(url).catch((error) => (console.warn(String(error)), null)) : null);
const zip = get(stepstoneZip);
// the image (about 30 MB) is for the first Pyodide of the page only: not kept once restored
let memory = optional(snapshot).then((bytes) => bytes && unsparse(bytes));
const bytecode = optional(pyscriptBytecode);
zip.catch(() => {}); // reported by loadPyodide(), if it is called

const SETUP = `
import os, sys
from importlib.util import cache_from_source
if zip not in sys.path:
    sys.path.append(zip)
if restored:
    # what Python worked out at start-up, when the snapshot was made in Node, is this browser's:
    # random's state, LANG, and the time module's zone (CPython's init_timezone: January's and
    # July's local time, the southern hemisphere's reversed)
    import random, time
    random.seed()
    os.environ["LANG"] = lang
    year = (365 * 24 + 6) * 3600
    jan = time.localtime(int(time.time()) // year * year)
    jul = time.localtime(int(time.time()) // year * year + year // 2)
    zones = [(-jan.tm_gmtoff, jan.tm_zone[:9]), (-jul.tm_gmtoff, jul.tm_zone[:9])]
    (time.timezone, standard), (time.altzone, summer) = sorted(zones, key=lambda zone: zone[0], reverse=True)
    time.tzname, time.daylight = (standard, summer), int(time.timezone != time.altzone)
if bytecode:
    import marshal
    if sys.pycache_prefix is None:
        sys.pycache_prefix = "/lib/pycache"
    with open(bytecode, "rb") as f:
        table = marshal.load(f)
    os.remove(bytecode)
    for source, pyc in table.items():
        target = cache_from_source(source)
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target, "wb") as f:
            f.write(pyc)
`;

// this browser's time zone into the C library's state, which the snapshot has from the build
// machine (what Emscripten's tzset() does once at start-up; strftime's %Z reads it)
function tzset(pyodide) {
  const m = pyodide._module;
  if (typeof m?.__tzset_js !== "function" || !m._tzname) return;
  m.__tzset_js(m._timezone, m._daylight, m.HEAPU32[m._tzname >>> 2], m.HEAPU32[(m._tzname >>> 2) + 1]);
}

async function restore(options) {
  const image = memory;
  memory = null;
  try {
    const bytes = await image;
    if (bytes) {
      const pyodide = await loadBare({ ...options, indexURL, _loadSnapshot: bytes });
      tzset(pyodide);
      return [pyodide, true];
    }
  } catch (error) {
    console.warn(`stepstone: the Pyodide memory snapshot did not load (${error}); starting Python instead`);
  }
  return [await loadBare({ ...options, indexURL }), false];
}

async function boot(options) {
  const [[pyodide, restored], archive, pyc] = await Promise.all([restore(options), zip, bytecode]);
  pyodide.FS.writeFile(zipPath, archive);
  const marshalled = pyc ? "/tmp/pyscript-bytecode.marshal" : null;
  if (marshalled) pyodide.FS.writeFile(marshalled, pyc);
  const lang = (globalThis.navigator?.language ?? "C").replace("-", "_") + ".UTF-8";
  const globals = pyodide.toPy({ zip: zipPath, bytecode: marshalled, restored, lang });
  try {
    pyodide.runPython(SETUP, { globals });
  } finally {
    globals.destroy();
  }
  return pyodide;
}

let early = null;

// Start Pyodide now, before anyone asks: the next loadPyodide() call takes this one.
export function start() {
  early ??= boot({});
  early.catch(() => {}); // reported by loadPyodide()
  return early;
}

// PyScript calls this with its stdout/stderr (and indexURL, which is ours): the early Pyodide takes
// them over; options it cannot take afterwards (packages, a lock file) get a Pyodide of their own.
export async function loadPyodide(options = {}) {
  const { stdout, stderr, indexURL: _, ...rest } = options;
  const taken = early;
  early = null;
  if (taken && Object.keys(rest).length === 0) {
    const pyodide = await taken;
    if (stdout) pyodide.setStdout({ batched: stdout });
    if (stderr) pyodide.setStderr({ batched: stderr });
    return pyodide;
  }
  return boot(options);
}
