"""stepstone.stores: persistence behind one contract.

    from stepstone.stores import open_store
    store = open_store("sqlite:///jobs.db")   # memory: · sqlite:///path · indexeddb://name (Pyodide)

Every backend lives in its own folder (``memory/``, ``sqlite/``, ``indexeddb/``) and implements
:class:`Store` (runs, steps, event logs) and, where it keeps Durable Streams, :class:`StreamStore`;
``tests/stores`` is the contract suite each one passes. Importing this package imports no backend:
:func:`open_store` imports the one its URL names, so ``sqlite3`` is never loaded in a browser and
``js`` never on a server.
"""

from ._contract import NewEvent, NewRun, RunFilter, Store, StreamStore
from ._urls import open_store

__all__ = ["NewEvent", "NewRun", "RunFilter", "Store", "StreamStore", "open_store"]
