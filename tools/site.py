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
- ``pyscript.json``: the PyScript config every page uses (local interpreter; the stepstone wheel
  unpacked into site-packages, so no micropip is needed at page load);
- ``stepstone-config.json``: the same facts for plain-JS loaders (tests, benchmarks).

Files are hard-linked from ``node_modules`` where the file system allows (a rebuild takes
milliseconds) and copied otherwise. Stdlib only.
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
CACHE = ROOT / "dist" / "cache"
MICROPIP_VERSION = "0.11.1"
PYODIDE_FILES = ("pyodide.mjs", "pyodide.js", "pyodide.asm.mjs", "pyodide.asm.wasm", "python_stdlib.zip")


def log(message: str) -> None:
    print(f"[site] {message}", flush=True)


def place(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (copy across file systems); replaces ``dst``."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    if dst.exists() or dst.is_symlink():
        dst.unlink()
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


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


_WHEEL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-")


def write_simple_index(site: Path) -> list[str]:
    """PEP 503: ``simple/<normalised-name>/index.html`` linking each wheel in ``wheels/``."""
    projects: dict[str, list[Path]] = {}
    for wheel in sorted((site / "wheels").glob("*.whl")):
        match = _WHEEL.match(wheel.name)
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


def write_configs(site: Path, wheel_name: str, micropip: Path, python: str) -> None:
    site_packages = f"/lib/python{python}/site-packages/*"
    pyscript = {
        "interpreter": "/vendor/pyodide/pyodide.mjs",
        "files": {f"/wheels/{wheel_name}": site_packages},
    }
    (site / "pyscript.json").write_text(json.dumps(pyscript, indent=2) + "\n")
    config = {
        "wheel": f"/wheels/{wheel_name}",
        "micropip": f"/wheels/{micropip.name}",
        "pyodideIndexURL": "/vendor/pyodide/",
        "pyodide": "/vendor/pyodide/pyodide.mjs",
        "pyscript": "/vendor/pyscript/core.js",
        "simpleIndex": "/simple/",
        "python": python,
    }
    (site / "stepstone-config.json").write_text(json.dumps(config, indent=2) + "\n")


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
    projects = write_simple_index(site)
    write_configs(site, wheel_name, micropip, python)
    log(
        f"pyodide for python {info['python']}, {chunks} pyscript files, micropip {MICROPIP_VERSION}, "
        f"index of {', '.join(projects)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
