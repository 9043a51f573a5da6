"""Build steps that run Pyodide itself, in Node, for ``tools/site.py``: byte code for the
standard library, the stepstone wheel and zip and PyScript's package; the importable stepstone zip;
the memory snapshot; and the loader (``tools/loader.mjs`` with a site's URLs) that uses them.
Stdlib only."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

from _common import CACHE, NODE_MODULES, WHEEL, npm_version, place, sha256

_COMPILE_JS = """
import { loadPyodide } from %(module)s;
import { readFileSync, writeFileSync } from "node:fs";
const jobs = JSON.parse(process.argv.at(-1));
const py = await loadPyodide({ indexURL: %(index)s });
for (const [i, job] of jobs.entries()) {
  // a zip's files, or (job.tree) a module whose default export is a tree of {name: source | folder}
  const input = job.tree ? JSON.stringify((await import(job.tree)).default) : readFileSync(job.src);
  py.FS.writeFile(`/tmp/in-${i}`, input);
}
py.globals.set("JOBS", JSON.stringify(jobs));
py.runPython(%(python)s);
for (const [i, job] of jobs.entries()) writeFileSync(job.dst, py.FS.readFile(`/tmp/out-${i}`));
"""

_COMPILE_PY = """
import importlib.util, json, marshal, zipfile
from importlib._bootstrap_external import _code_to_hash_pyc


def pyc(source, filename, checked):
    code = compile(source, filename, "exec", dont_inherit=True)
    return _code_to_hash_pyc(code, importlib.util.source_hash(source), checked)


def compile_zip(job, src, dst):
    added = []
    record = None
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = zin.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                record = (info, data)
                continue
            zout.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED)
            if not info.filename.endswith(".py"):
                continue
            try:
                code = pyc(data, job["where"] + "/" + info.filename, job["checked"])
            except SyntaxError:
                continue
            folder, _, name = info.filename.rpartition("/")
            if job["layout"] == "zipimport":
                target = info.filename + "c"
            else:
                target = (folder + "/" if folder else "") + "__pycache__/" + name[:-3] + ".cpython-314.pyc"
            entry = zipfile.ZipInfo(target, date_time=info.date_time)
            zout.writestr(entry, code, compress_type=zipfile.ZIP_DEFLATED)
            added.append(target)
        if record is not None:
            lines = record[1].decode().rstrip("\\n") + "\\n" + "".join(f"{name},,\\n" for name in added)
            zout.writestr(record[0], lines.encode(), compress_type=zipfile.ZIP_DEFLATED)


def compile_tree(job, src, dst):
    # {source file's path: its checked hash-based .pyc}, for sources written at run time
    table = {}
    def walk(node, folder):
        for name, value in node.items():
            if isinstance(value, dict):
                walk(value, folder + "/" + name)
            elif name.endswith(".py"):
                table[folder + "/" + name] = pyc(value.encode(), folder + "/" + name, True)
    with open(src) as f:
        walk(json.load(f), job["where"])
    with open(dst, "wb") as f:
        marshal.dump(table, f)


for i, job in enumerate(json.loads(JOBS)):
    (compile_tree if "tree" in job else compile_zip)(job, f"/tmp/in-{i}", f"/tmp/out-{i}")
"""

#: where PyScript writes its ``pyscript`` package's sources at every start (relative to Pyodide's
#: working directory, ``/home/pyodide``), from this artifact of ``@pyscript/core``
PYSCRIPT_STDLIB = NODE_MODULES / "@pyscript" / "core" / "src" / "stdlib" / "pyscript.js"
PYSCRIPT_CWD = "/home/pyodide"
#: the byte code of those sources, in ``vendor/pyscript/`` (the loader puts it to use)
PYSCRIPT_BYTECODE = "pyscript.cpython-314.marshal"


def zip_name(wheel_name: str) -> str:
    """``stepstone-0.1.0-py3-none-any.whl`` -> ``stepstone-0.1.0.zip``."""
    match = WHEEL.match(wheel_name)
    if match is None:
        sys.exit(f"{wheel_name} is not a wheel's file name")
    return f"{match['name']}-{match['version']}.zip"


def importable_zip(site: Path, wheel_name: str) -> Path:
    """``wheels/<name>-<version>.zip``: the wheel's files but its ``RECORD``, for zipimport (the
    loader puts it on ``sys.path``; its ``.dist-info`` keeps ``importlib.metadata`` working)."""
    wheel = site / "wheels" / wheel_name
    target = site / "wheels" / zip_name(wheel_name)
    with zipfile.ZipFile(wheel) as zin, zipfile.ZipFile(str(target) + ".tmp", "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if not info.filename.endswith(".dist-info/RECORD"):
                zout.writestr(info, zin.read(info), compress_type=zipfile.ZIP_DEFLATED)
    os.replace(str(target) + ".tmp", target)
    return target


def compile_bytecode(site: Path, wheel_name: str, python: str) -> str:
    """Add Pyodide byte code to the served standard library, wheel and stepstone zip, and compile
    PyScript's own Python package (see the module docstring)."""
    node = shutil.which("node")
    if node is None:
        return "no byte code (node is missing)"
    stdlib = site / "vendor" / "pyodide" / "python_stdlib.zip"
    cached = CACHE / f"python_stdlib-{sha256(stdlib)[:16]}-pyc.zip"
    wheel = site / "wheels" / wheel_name
    archive = site / "wheels" / zip_name(wheel_name)
    pyscript = site / "vendor" / "pyscript" / PYSCRIPT_BYTECODE
    jobs: list[dict[str, object]] = [
        {"src": str(wheel), "dst": str(wheel) + ".pyc", "where": f"/lib/python{python}/site-packages",
         "layout": "pycache", "checked": True},
        {"src": str(archive), "dst": str(archive) + ".pyc", "where": zip_path(archive.name),
         "layout": "zipimport", "checked": False},
        {"tree": PYSCRIPT_STDLIB.as_uri(), "dst": str(pyscript) + ".tmp", "where": PYSCRIPT_CWD},
    ]  # fmt: skip
    if not cached.exists():
        where = f"/lib/python{python.replace('.', '')}.zip"  # where Pyodide mounts it
        jobs.append({"src": str(stdlib), "dst": str(cached) + ".tmp", "where": where, "layout": "zipimport",
                     "checked": False})  # fmt: skip
    index = (NODE_MODULES / "pyodide").as_posix() + "/"
    script = _COMPILE_JS % {
        "module": json.dumps(index + "pyodide.mjs"), "index": json.dumps(index), "python": json.dumps(_COMPILE_PY),
    }  # fmt: skip
    command = [node, "--input-type=module", "-e", script, json.dumps(jobs)]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"compiling byte code with Pyodide in node failed:\n{result.stderr.strip()[-2000:]}")
    if not cached.exists():
        os.replace(str(cached) + ".tmp", cached)
    os.replace(str(wheel) + ".pyc", wheel)
    os.replace(str(archive) + ".pyc", archive)
    os.replace(str(pyscript) + ".tmp", pyscript)
    place(cached, stdlib)
    return f"byte code for the standard library ({cached.name}), {wheel_name}, {archive.name} and PyScript"


#: the parts of stepstone the memory snapshot leaves out: they need CPython-only packages (httpx,
#: starlette, sqlite3, psycopg, OpenTelemetry, pytest) or are the command line. Every other
#: module is imported into it (tests/browser/test_site_cache.py checks the pages against it).
SNAPSHOT_SKIPS = (
    "stepstone.server", "stepstone.cli", "stepstone.stores.sqlite", "stepstone.stores.postgres",
    "stepstone._http._httpx", "stepstone.otel", "stepstone.pytest_plugin", "stepstone.testing",
    "stepstone.demo",
)  # fmt: skip

_SNAPSHOT_JS = """
import { loadPyodide } from %(module)s;
import { readFileSync, writeFileSync } from "node:fs";
const py = await loadPyodide({ indexURL: %(index)s, _makeSnapshot: true });
py.FS.writeFile(%(path)s, readFileSync(%(zip)s));
py.globals.set("ZIP", %(path)s);
py.globals.set("SKIPS", %(skips)s);
py.runPython(%(python)s);
writeFileSync(%(dst)s, py.makeMemorySnapshot());
"""

_SNAPSHOT_PY = """
def _snapshot_imports():
    import importlib, json, pkgutil, sys
    sys.path.append(ZIP)
    skips = tuple(json.loads(SKIPS))
    def walk(package):
        for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
            if not any(info.name == skip or info.name.startswith(skip + ".") for skip in skips):
                module = importlib.import_module(info.name)
                if info.ispkg:
                    walk(module)
    import stepstone
    walk(stepstone)
    for name in stepstone.__all__:
        getattr(stepstone, name)

_snapshot_imports()
del _snapshot_imports, ZIP, SKIPS
"""


def make_snapshot(site: Path, wheel_name: str, python: str) -> Path | None:
    """``snapshot/pyodide-<version>-stepstone-<version>.snapshot``: Pyodide's memory once it has
    started and imported stepstone from its zip (every module but ``SNAPSHOT_SKIPS``) (``loadPyodide``'s
    ``_makeSnapshot``), made with the served runtime files in Node, without its zero pages
    (``sparse``). The loader restores it instead of starting Python and importing stepstone on
    every page load. None without ``node``."""
    node = shutil.which("node")
    if node is None:
        return None
    index = (site / "vendor" / "pyodide").as_posix() + "/"
    archive = site / "wheels" / zip_name(wheel_name)
    target = site / "snapshot" / f"pyodide-{npm_version('pyodide')}-{archive.stem}.snapshot"
    target.parent.mkdir(exist_ok=True)
    for old in target.parent.iterdir():
        old.unlink()
    script = _SNAPSHOT_JS % {
        "module": json.dumps(index + "pyodide.mjs"), "index": json.dumps(index), "zip": json.dumps(str(archive)),
        "path": json.dumps(zip_path(archive.name)), "skips": json.dumps(json.dumps(SNAPSHOT_SKIPS)),
        "python": json.dumps(_SNAPSHOT_PY), "dst": json.dumps(str(target) + ".tmp"),
    }  # fmt: skip
    result = subprocess.run([node, "--input-type=module", "-e", script], capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"making the Pyodide memory snapshot in node failed:\n{result.stderr.strip()[-2000:]}")
    raw = Path(str(target) + ".tmp")
    target.write_bytes(sparse(raw.read_bytes()))
    raw.unlink()
    return target


SPARSE_MAGIC = b"STEPSNP1"


def sparse(image: bytes, page: int = 4096) -> bytes:
    """A memory image without its zero pages (about half of a fresh Pyodide's memory): magic,
    u32 length, u32 run count, (u32 offset, u32 length) per run of non-zero pages, then the runs'
    bytes. The loader rebuilds the image (``unsparse`` in ``tools/loader.mjs``)."""
    zero = bytes(page)
    runs: list[tuple[int, int]] = []
    for offset in range(0, len(image), page):
        if image[offset : offset + page] == zero[: len(image) - offset]:
            continue
        end = min(offset + page, len(image))
        if runs and runs[-1][1] == offset:
            runs[-1] = (runs[-1][0], end)
        else:
            runs.append((offset, end))
    head = SPARSE_MAGIC + struct.pack("<II", len(image), len(runs))
    table = b"".join(struct.pack("<II", start, end - start) for start, end in runs)
    return head + table + b"".join(image[start:end] for start, end in runs)


def zip_path(name: str) -> str:
    """Where the loader writes the stepstone zip in Pyodide's file system (also the file name
    its byte code and tracebacks name)."""
    return f"/lib/{name}"


LOADER_TEMPLATE = Path(__file__).with_name("loader.mjs")


def loader_text(pyodide: str, zip_url: str, zip_name: str, snapshot: str | None, bytecode: str | None) -> str:
    """``tools/loader.mjs`` pointed at a site's files: the ``import`` of Pyodide and each
    ``export const`` of its settings block."""
    text = LOADER_TEMPLATE.read_text()
    values = {"indexURL": pyodide, "stepstoneZip": zip_url, "zipPath": zip_path(zip_name), "snapshot": snapshot,
              "pyscriptBytecode": bytecode}  # fmt: skip
    module = json.dumps(pyodide + "pyodide.mjs")
    text, found = re.subn(r'^(import \{ loadPyodide as loadBare, version \} from )"[^"]*";$',
                          lambda m: f"{m.group(1)}{module};", text, flags=re.M)  # fmt: skip
    for name, value in values.items():
        text, count = re.subn(rf"^export const {name} = .*;$", f"export const {name} = {json.dumps(value)};",
                              text, count=1, flags=re.M)  # fmt: skip
        found += count
    if found != len(values) + 1:
        sys.exit(f"{LOADER_TEMPLATE} lacks its import of Pyodide or one of: {', '.join(values)}")
    return text
