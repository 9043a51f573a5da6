#!/usr/bin/env python3
"""Finish the offline site that ``build.py``'s ``build_site()`` started in ``dist/site``.

    .venv/bin/python tools/site.py dist/site stepstone-0.1.0-py3-none-any.whl

``build.py`` has already copied ``web/`` and the stepstone wheel (into ``wheels/``) and run
``npm ci``. This script adds everything a page needs so that no request ever leaves the origin:

- ``vendor/pyodide/``: the runtime files of the npm ``pyodide`` package (no source maps, no docs),
  its ``pyodide-lock.json`` with micropip's sha256 patched to the wheel served here, and that wheel;
- ``vendor/pyscript/``: ``@pyscript/core``'s ``dist/`` (no source maps);
- ``wheels/micropip-….whl``: downloaded once from PyPI for Pyodide's Python, cached in
  ``dist/cache/`` so later builds are offline;
- ``simple/``: a PEP 503 index of the served wheels, for ``micropip.install(name, index_urls=…)``;
- ``wheels/stepstone-<version>.zip``: the wheel's files (no ``RECORD``) as a zip that Python
  imports from directly (zipimport), with byte code beside each module: nothing to unpack at page
  load;
- ``snapshot/pyodide-<version>-stepstone-<version>.snapshot``: Pyodide's memory once it has started
  and imported stepstone (``make_snapshot``), so that a page restores it instead of starting Python;
- ``vendor/pyscript/pyscript.cpython-314.marshal``: the byte code of the Python package PyScript
  writes and imports at every start;
- ``stepstone-pyodide.mjs``: this site's ``loadPyodide`` (``_LOADER``), which puts those three to
  use; the pages that use ``pyscript.json`` call its ``start()`` from their head;
- ``pyscript.json``: the PyScript config every page uses (``interpreter``: that loader, so
  ``import stepstone`` works with no micropip and no ``files`` to unpack; PyScript's editor,
  terminal, game and "donkey" plugins left out, as no page uses them and PyScript loads them
  before Pyodide);
- ``stepstone-config.json``: the same facts for plain-JS loaders (tests, benchmarks, the worker);
- ``NAME.gz`` beside the large vendored files (``gzip_copies``), which ``stepstone serve`` sends to
  browsers that take gzip.

For caching, ``vendor/pyodide/`` and ``vendor/pyscript/`` are also placed under versioned names,
``vendor/pyodide@<version>-<hash>/`` (``<hash>``: 8 hex digits of sha256 over the directory's
files), which ``stepstone serve`` serves as immutable; the configs and every page of the site name
those (the unversioned directories stay, revalidated on each use, for pages written against them).
The wheel, the zip, the snapshot and the loader keep their names and are named by
content-addressed URLs (``/wheels/~<sha256[:16]>/<wheel>``), immutable while the file matches
(see ``stepstone/server/_static.py``).

Byte code: the npm package's ``python_stdlib.zip`` holds only sources, so every page compiled each
standard module it imported, on every visit (with the stepstone wheel's own modules, about a second
of a page's boot on a busy machine). The build compiles them once, with Pyodide's own CPython in
Node (``node`` comes with npm): the served ``python_stdlib.zip`` and the stepstone zip get
``name.pyc`` beside each ``name.py`` (where zipimport looks; unchecked hash-based: the files are
immutable), the served wheel gets ``__pycache__/*.cpython-314.pyc`` listed in its RECORD and
PyScript's package gets its marshal file (both checked hash-based: a source that differs is
compiled again, never run stale). The compiled standard library is cached in ``dist/cache/`` by the
source archive's hash. Without ``node`` the site is built without byte code and without a snapshot.

Files are hard-linked from ``node_modules`` where the file system allows (a rebuild takes
milliseconds) and copied otherwise. Stdlib only.
"""

from __future__ import annotations

import gzip
import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from _common import CACHE, NODE_MODULES, ROOT, WHEEL, log, npm_version, place, sha256
from pyodide_build import (
    PYSCRIPT_BYTECODE,
    compile_bytecode,
    importable_zip,
    loader_text,
    make_snapshot,
    zip_name,
)

MICROPIP_VERSION = "0.11.1"
#: @pyscript/core plugins the stepstone pages leave out (``error``, which shows a page's Python
#: errors in the page, stays)
UNUSED_PLUGINS = ("deprecations-manager", "donkey", "py-editor", "py-game", "py-terminal")
PYODIDE_FILES = ("pyodide.mjs", "pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")


def micropip_wheel(python: str) -> Path:
    """The micropip wheel from PyPI for Pyodide's Python (``3.14``), downloaded once."""
    CACHE.mkdir(parents=True, exist_ok=True)
    name = f"micropip-{MICROPIP_VERSION}-py3-none-any.whl"
    cached = CACHE / name
    if cached.exists():
        return cached
    log(f"downloading {name} from PyPI (cached in {CACHE.relative_to(ROOT)})")
    cmd = [
        sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "-q",
        f"micropip=={MICROPIP_VERSION}", "--no-deps", "--python-version", python,
        "--only-binary=:all:", "-d", str(CACHE),
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0 or not cached.exists():
        sys.exit(
            f"could not download {name} (needed by pages that use micropip): "
            f"{result.stderr.strip() or 'pip reported no error but wrote no wheel'}\n"
            f"Put the wheel in {cached} by hand to build offline."
        )
    return cached


def vendor_pyodide(site: Path, micropip: Path) -> dict[str, str]:
    src = NODE_MODULES / "pyodide"
    if not (src / "pyodide.mjs").exists():
        sys.exit(f"{src} is missing: run `npm ci` (build.py does) before tools/site.py")
    out = site / "vendor" / "pyodide"
    for name in PYODIDE_FILES:
        place(src / name, out / name)
    lock = json.loads((src / "pyodide-lock.json").read_text())
    entry = lock["packages"]["micropip"]
    if entry["file_name"] != micropip.name:
        sys.exit(f"pyodide-lock.json names {entry['file_name']}, but tools/site.py serves {micropip.name}")
    # Pyodide's own build of the wheel differs from PyPI's; the lock must name the bytes we serve,
    # or loadPackage("micropip") fails its integrity check.
    entry["sha256"] = sha256(micropip)
    (out / "pyodide-lock.json").write_text(json.dumps(lock, separators=(",", ":")))
    place(micropip, out / micropip.name)
    info: dict[str, str] = lock["info"]
    return info


def vendor_pyscript(site: Path) -> int:
    src = NODE_MODULES / "@pyscript" / "core" / "dist"
    if not (src / "core.js").exists():
        sys.exit(f"{src} is missing: run `npm ci` (build.py does) before tools/site.py")
    out = site / "vendor" / "pyscript"
    count = 0
    for path in sorted(src.iterdir()):
        if path.is_file() and not path.name.endswith(".map"):
            place(path, out / path.name)
            count += 1
    return count


def write_simple_index(site: Path) -> list[str]:
    """PEP 503: ``simple/<normalised-name>/index.html`` linking each wheel in ``wheels/``."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted((site / "wheels").glob("*.whl")):
        match = WHEEL.match(wheel.name)
        if match:
            name = re.sub(r"[-_.]+", "-", match["name"]).lower()
            projects.setdefault(name, []).append(wheel)
    simple = site / "simple"
    shutil.rmtree(simple, ignore_errors=True)
    simple.mkdir(parents=True)
    links = "".join(f'<a href="{html.escape(n)}/">{html.escape(n)}</a>\n' for n in sorted(projects))
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{links}</body></html>\n")
    for name, wheels in projects.items():
        rows = "".join(
            f'<a href="/wheels/{html.escape(w.name)}#sha256={sha256(w)}">{html.escape(w.name)}</a>\n' for w in wheels
        )
        (simple / name).mkdir()
        (simple / name / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{rows}</body></html>\n")
    return sorted(projects)


def versioned_copy(folder: Path, version: str) -> str:
    """Hard-link ``folder``'s files into ``<folder>@<version>-<hash8>/`` (the hash covers every
    file's name and bytes, so a change of content is a change of name); returns that name."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    name = f"{folder.name}@{version}-{digest.hexdigest()[:8]}"
    for path in files:
        place(path, folder.parent / name / path.name)
    return name


def content_url(site: Path, relative: str) -> str:
    """The content-addressed URL of a file of the site: ``/DIR/~<sha256[:16]>/NAME``."""
    path = site / relative
    folder = path.parent.relative_to(site).as_posix()
    return f"{'' if folder == '.' else '/' + folder}/~{sha256(path)[:16]}/{path.name}"


def version_pages(site: Path, renames: dict[str, str], loader: str) -> list[str]:
    """Point every page of the site at the versioned vendor directories (``/vendor/pyscript/`` →
    ``/vendor/pyscript@…/``): immutable on a return visit instead of revalidated. A page that loads
    PyScript also gets ``modulepreload`` links for the loader and Pyodide's two modules, so the
    browser reads and compiles them while PyScript is still starting up, not after."""
    changed = []
    core = f'<script type="module" src="/vendor/{renames["pyscript"]}/core.js"></script>'
    modules = [loader] + [f"/vendor/{renames['pyodide']}/{name}" for name in ("pyodide.mjs", "pyodide.asm.mjs")]
    preload = "".join(f'<link rel="modulepreload" href="{url}">\n  ' for url in modules)
    early = f'<script type="module">import {{ start }} from "{loader}"; start();</script>\n  '
    main_config = re.compile(r'<script type="py"(?![^>]*\bworker\b)[^>]*config="/pyscript\.json"')
    for page in sorted(site.rglob("*.html")):
        if page.relative_to(site).parts[0] in ("vendor", "simple"):
            continue
        text = original = page.read_text()
        for old, new in renames.items():
            text = text.replace(f'"/vendor/{old}/', f'"/vendor/{new}/')
        if core in text and "modulepreload" not in text:
            # a page whose main-thread script uses this site's pyscript.json also starts Pyodide
            # at once (the loader's start()), instead of once PyScript has set itself up
            text = text.replace(core, preload + (early if main_config.search(text) else "") + core, 1)
        if text != original:
            page.write_text(text)
            changed.append(page.relative_to(site).as_posix())
    return changed


def write_loader(site: Path, wheel_name: str, vendor: dict[str, str], snapshot: Path | None) -> str:
    """``stepstone-pyodide.mjs`` (``tools/loader.mjs`` with this site's URLs); returns its
    content-addressed URL."""
    bytecode = site / "vendor" / vendor["pyscript"] / PYSCRIPT_BYTECODE
    text = loader_text(
        pyodide=f"/vendor/{vendor['pyodide']}/",
        zip_url=content_url(site, f"wheels/{zip_name(wheel_name)}"),
        zip_name=zip_name(wheel_name),
        snapshot=content_url(site, snapshot.relative_to(site).as_posix()) if snapshot else None,
        bytecode=f"/vendor/{vendor['pyscript']}/{PYSCRIPT_BYTECODE}" if bytecode.exists() else None,
    )
    (site / "stepstone-pyodide.mjs").write_text(text)
    return content_url(site, "stepstone-pyodide.mjs")


def write_configs(
    site: Path, wheel_name: str, micropip: Path, python: str, vendor: dict[str, str], loader: str,
    snapshot: Path | None,
) -> None:
    wheel = content_url(site, f"wheels/{wheel_name}")
    pyodide = f"/vendor/{vendor['pyodide']}/"
    pyscript = {
        "interpreter": loader,
        # PyScript loads these plugins before it starts Pyodide; no stepstone page uses them
        # (a page that wants its own terminal or editor uses a config of its own)
        "plugins": [f"!{name}" for name in UNUSED_PLUGINS],
    }
    (site / "pyscript.json").write_text(json.dumps(pyscript, indent=2) + "\n")
    config = {
        "loader": loader,
        "zip": content_url(site, f"wheels/{zip_name(wheel_name)}"),
        "snapshot": content_url(site, snapshot.relative_to(site).as_posix()) if snapshot else None,
        "wheel": wheel,
        "micropip": f"/wheels/{micropip.name}",
        "pyodideIndexURL": pyodide,
        "pyodide": f"{pyodide}pyodide.mjs",
        "pyscript": f"/vendor/{vendor['pyscript']}/core.js",
        "simpleIndex": "/simple/",
        "python": python,
    }
    (site / "stepstone-config.json").write_text(json.dumps(config, indent=2) + "\n")


#: vendored files at least this large get a gzipped copy beside them (``NAME.gz``), if it is at
#: most ``GZIP_RATIO`` of their size
GZIP_MIN_SIZE = 64 * 1024
GZIP_RATIO = 0.8


def gzip_copies(folder: Path) -> list[str]:
    """Write ``NAME.gz`` beside each large, compressible file of ``folder``; returns the names.
    ``stepstone serve`` sends the copy to browsers that take gzip: Pyodide's WebAssembly goes from
    9.6 to 3.6 MB on a first visit. Deterministic (no timestamp inside), and cached in
    ``dist/cache/`` by the file's sha256, so an unchanged file is not compressed again.

    Not the memory snapshot (15 → 6 MB): a browser keeps a gzipped answer gzipped in its cache and
    decodes it on every visit, which cost the loader 88 ms per return visit (473 against 385 ms,
    15 rounds, medians); WebAssembly is compiled once and its code cached, so it does not pay."""
    done = []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix == ".gz" or path.stat().st_size < GZIP_MIN_SIZE:
            continue
        target = path.with_name(path.name + ".gz")
        target.unlink(missing_ok=True)
        cached = CACHE / f"gzip-{sha256(path)[:32]}.gz"
        if not cached.exists():
            CACHE.mkdir(parents=True, exist_ok=True)
            packed = gzip.compress(path.read_bytes(), compresslevel=6, mtime=0)
            # not worth it (the zips, whose members are compressed already): an empty file says so
            cached.write_bytes(packed if len(packed) <= GZIP_RATIO * path.stat().st_size else b"")
        if cached.stat().st_size:
            place(cached, target)
            os.utime(target)  # newer than the file, or stepstone serve takes it for stale
            done.append(path.name)
    return done


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print("usage: tools/site.py SITE_DIR WHEEL_FILE_NAME", file=sys.stderr)
        return 2
    site, wheel_name = Path(argv[0]).resolve(), argv[1]
    if not (site / "wheels" / wheel_name).exists():
        sys.exit(f"{site / 'wheels' / wheel_name} is missing: build.py copies the wheel there first")
    lock = json.loads((NODE_MODULES / "pyodide" / "pyodide-lock.json").read_text())
    python = ".".join(lock["info"]["python"].split(".")[:2])
    micropip = micropip_wheel(python)
    info = vendor_pyodide(site, micropip)
    place(micropip, site / "wheels" / micropip.name)
    chunks = vendor_pyscript(site)
    importable_zip(site, wheel_name)
    compiled = compile_bytecode(site, wheel_name, python)
    snapshot = make_snapshot(site, wheel_name, python)
    gzipped = [*gzip_copies(site / "vendor" / "pyodide"), *gzip_copies(site / "vendor" / "pyscript")]
    vendor = {
        "pyodide": versioned_copy(site / "vendor" / "pyodide", npm_version("pyodide")),
        "pyscript": versioned_copy(site / "vendor" / "pyscript", npm_version("@pyscript/core")),
    }
    projects = write_simple_index(site)
    loader = write_loader(site, wheel_name, vendor, snapshot)
    write_configs(site, wheel_name, micropip, python, vendor, loader, snapshot)
    pages = version_pages(site, vendor, loader)
    log(
        f"pyodide for python {info['python']}, {chunks} pyscript files, micropip {MICROPIP_VERSION}, "
        f"index of {', '.join(projects)}; {', '.join(sorted(vendor.values()))} for {len(pages)} pages; {compiled}; "
        f"gzipped copies of {', '.join(gzipped)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
