"""What ``tools/site.py`` and ``tools/pyodide_build.py`` share: paths and small file helpers.
Stdlib only."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
CACHE = ROOT / "dist" / "cache"
#: a wheel's file name: ``stepstone-0.1.0-py3-none-any.whl``
WHEEL = re.compile(r"^(?P<name>[A-Za-z0-9_.]+)-(?P<version>[^-]+)-")


def log(message: str) -> None:
    print(f"[site] {message}", flush=True)


def npm_version(package: str) -> str:
    version: str = json.loads((NODE_MODULES / package / "package.json").read_text())["version"]
    return version


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
