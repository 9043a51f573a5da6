"""stepstone.browser: the one door to JavaScript.

Every module of stepstone that imports ``js``, ``pyodide`` or ``pyodide_js`` lives in this folder,
and nothing outside it does (``tests/test_architecture.py`` holds the rule). Here:

* ``_values``    Python data to JS values and back, JS errors as text
* ``_idb``       IndexedDB: transactions driven by programs, opening and upgrades, key ranges
* ``_idb_batch`` many IndexedDB puts in one call (the IndexedDB store's group commit)
* ``_locks``     Web Locks (one tab executes a run; a closed tab is proven dead at once)
* ``_broadcast`` wake-ups across tabs over a BroadcastChannel
* ``_fetch``     the HTTP transport on the browser's ``fetch`` (for ``stepstone.client`` and ``stepstone.streams``)
* ``_eventsource`` the browser's ``EventSource`` for that transport's header-less live streams
* ``_storage``   ``window.localStorage`` behind the hooks' ``Storage`` protocol
* ``_dom``       the DOM helpers that ``stepstone.hooks.dom`` re-exports
* ``_opfs``      the Origin Private File System: files through ``FileSystemSyncAccessHandle`` (workers)
* ``_rpc``       worker mode's protocol: an engine's methods as JSON messages (pure Python)
* ``_worker``    worker mode: start a Web Worker and drive its engine (``WorkerSource``), serve in it;
                 public as ``stepstone.browser.worker``

Importing this package imports no JavaScript: :func:`in_pyodide` is the one check of where we run
(as micropip's ``_compat`` does it), and each submodule is imported only where it is needed.
``_storage`` and ``_dom`` import ``js`` inside their functions, so CPython can import (and test) the
pure parts of the hooks that re-export them.
"""

from __future__ import annotations

import sys

__all__ = ["in_pyodide"]


def in_pyodide() -> bool:
    """True inside Pyodide (a page, a worker), False on CPython. The one place that asks."""
    return "_pyodide_core" in sys.modules or sys.platform == "emscripten"
