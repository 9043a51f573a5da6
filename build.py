#!/usr/bin/env python3
"""Set-up and tasks for stepstone, with nothing but a Python >= 3.11 on the machine.

    python build.py serve   # venv + install + site, then the demo server on http://127.0.0.1:8000
    python build.py test    # venv + install + site + Chromium, then ruff, mypy --strict and pytest
    python build.py site    # assemble the offline site in dist/site/ (--force: even when up to date)
    python build.py wheel   # build the stepstone wheel into dist/

Everything lands in ./.venv, ./node_modules and ./dist; re-running only redoes what changed: the
venv is stamped with pyproject.toml, node_modules with package-lock.json, and dist/site with
everything it is made from (src/, web/, package-lock.json, tools/, pyproject.toml), so a
`serve` with nothing changed starts the server at once (`site --force` rebuilds anyway).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
DIST = ROOT / "dist"
SITE = DIST / "site"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def log(message: str) -> None:
    print(f"[build] {message}", flush=True)


def run(*cmd: str | Path, check: bool = True, **kwargs: object) -> int:
    log(" ".join(str(c) for c in cmd))
    return subprocess.run([str(c) for c in cmd], check=check, cwd=ROOT, **kwargs).returncode  # type: ignore[call-overload,no-any-return]


def _stamp(name: str, *inputs: Path) -> tuple[Path, str]:
    digest = hashlib.sha256()
    for path in inputs or (ROOT / "pyproject.toml",):
        if path.exists():
            digest.update(path.read_bytes())
    return VENV / f".stamp-{name}", digest.hexdigest()


#: what dist/site is made from; a change to any of these rebuilds the wheel and the site
SITE_INPUTS = ("src", "web", "package-lock.json", "tools", "pyproject.toml")
SITE_STAMP = DIST / ".stamp-site"


def _tree_digest(*names: str) -> str:
    """sha256 over the paths and bytes of every file under ``names`` (caches and build litter left out)."""
    digest = hashlib.sha256()
    for name in names:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file()) if top.is_dir() else []
        for path in files:
            parts = path.relative_to(ROOT).parts
            if "__pycache__" in parts or any(part.endswith(".egg-info") for part in parts) or path.suffix == ".pyc":
                continue
            digest.update("/".join(parts).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _site_is_current(digest: str) -> bool:
    return (
        SITE_STAMP.exists()
        and SITE_STAMP.read_text() == digest
        and (SITE / "stepstone-config.json").exists()
        and any((SITE / "wheels").glob("stepstone-*.whl"))
    )


#: extras that include others (``test`` brings ``server`` and ``client``): a venv set up for ``test``
#: needs no second pip run for ``serve``
_INCLUDES = {"test": ("server", "client"), "dev": ("test", "server", "client")}


def ensure_venv(extras: str) -> None:
    """Create .venv and install the project (editable) with ``extras`` when anything changed."""
    if not PY.exists():
        log(f"creating {VENV}")
        venv.EnvBuilder(with_pip=True, clear=True).create(VENV)
    stamp, digest = _stamp(extras, ROOT / "pyproject.toml")
    covering = [extras, *(name for name, included in _INCLUDES.items() if extras in included)]
    if any(_stamp(name)[0].exists() and _stamp(name)[0].read_text() == digest for name in covering):
        return
    run(PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "--upgrade", "pip")
    run(PY, "-m", "pip", "install", "--disable-pip-version-check", "-q", "-e", f".[{extras}]")
    stamp.write_text(digest)


def ensure_node_modules() -> None:
    """``npm ci`` from the pinned package-lock.json (Pyodide, PyScript, the conformance suite)."""
    lock = ROOT / "package-lock.json"
    if not lock.exists():
        return
    stamp = ROOT / "node_modules" / ".stamp"
    digest = hashlib.sha256(lock.read_bytes()).hexdigest()
    if stamp.exists() and stamp.read_text() == digest:
        return
    if shutil.which("npm") is None:
        sys.exit("npm is needed for the offline site (Pyodide, PyScript): install Node.js >= 20 and npm")
    run("npm", "ci", "--no-audit", "--no-fund", "--loglevel=error")
    stamp.write_text(digest)


CHROMIUM = Path("/usr/bin/chromium")


def ensure_chromium() -> None:
    """The browser tests drive Debian's Chromium; install it when missing and we may."""
    if CHROMIUM.exists() or os.environ.get("STEPSTONE_SKIP_BROWSER") == "1":
        return
    if hasattr(os, "geteuid") and os.geteuid() == 0 and shutil.which("apt-get"):
        run("apt-get", "update", "-qq")
        run("apt-get", "install", "-y", "-qq", "chromium", env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"})
        return
    sys.exit(
        "Chromium is missing at /usr/bin/chromium. Install it (Debian: `sudo apt-get install -y chromium`) "
        "or set STEPSTONE_SKIP_BROWSER=1 to skip the browser tests."
    )


def build_wheel() -> Path:
    out = DIST / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    run(PY, "-m", "pip", "wheel", "--disable-pip-version-check", "-q", "--no-deps", "-w", out, ".")
    wheels = sorted(out.glob("stepstone-*.whl"))
    if not wheels:
        sys.exit("building the stepstone wheel produced nothing")
    return wheels[-1]


def build_site(force: bool = False) -> Path:
    """dist/site/: the pages of web/, the stepstone wheel in wheels/, and the vendored runtimes;
    nothing to do when none of ``SITE_INPUTS`` changed since the last build (unless ``force``)."""
    digest = _tree_digest(*SITE_INPUTS)
    if not force and _site_is_current(digest):
        return SITE
    SITE_STAMP.unlink(missing_ok=True)
    wheel = build_wheel()
    ensure_node_modules()
    shutil.rmtree(SITE, ignore_errors=True)
    shutil.copytree(ROOT / "web", SITE)
    (SITE / "wheels").mkdir(parents=True, exist_ok=True)
    shutil.copy2(wheel, SITE / "wheels" / wheel.name)
    _site_extras = ROOT / "tools" / "site.py"
    if _site_extras.exists():
        run(PY, _site_extras, SITE, wheel.name)
    SITE_STAMP.write_text(digest)
    log(f"site ready in {SITE}")
    return SITE


def cmd_site(args: list[str]) -> int:
    ensure_venv("test")
    if "--force" not in args and _site_is_current(_tree_digest(*SITE_INPUTS)):
        log(f"{SITE} is up to date (`python3 build.py site --force` rebuilds it)")
        return 0
    build_site(force=True)
    return 0


def cmd_wheel(args: list[str]) -> int:
    ensure_venv("server")
    log(f"built {build_wheel()}")
    return 0


def cmd_serve(args: list[str]) -> int:
    ensure_venv("server")
    build_site()  # at once when nothing changed
    (ROOT / "var").mkdir(exist_ok=True)
    cmd = [
        str(BIN / "stepstone"),
        "serve",
        "--store",
        "sqlite:///var/demo.db",
        "--jobs",
        "stepstone.demo",
        "--host",
        "127.0.0.1",
        "--port",
        "8000",
        "--site",
        str(SITE),
        *args,
    ]
    log(" ".join(cmd))
    os.chdir(ROOT)
    os.execv(cmd[0], cmd)
    return 0


def cmd_test(args: list[str]) -> int:
    ensure_venv("test")
    ensure_chromium()
    ensure_node_modules()  # the conformance suite runs from node_modules, even when the site is current
    build_site()
    run(BIN / "ruff", "check", "src", "tests", "bench", "build.py")
    run(BIN / "mypy", "src")
    code = run(PY, "-m", "pytest", *(args or ["-q"]), check=False)
    if code == 5:
        log("pytest collected no tests")
    return code


def cmd_bench(args: list[str]) -> int:
    ensure_venv("test")
    found = sorted((ROOT / "bench").glob("*.py"))
    scripts = args or [str(p.relative_to(ROOT)) for p in found if not p.name.startswith("_")]  # _x.py: helpers
    for script in scripts:
        run(PY, script)
    return 0


COMMANDS = {"test": cmd_test, "serve": cmd_serve, "site": cmd_site, "wheel": cmd_wheel, "bench": cmd_bench}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        print(__doc__)
        return 2
    return COMMANDS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
