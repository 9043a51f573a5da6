"""One open IndexedDB database of the store: opening and migrating it, letting go of it when
another tab upgrades it, and running transaction programs on it.

Opening never hangs silently: a ``blocked`` upgrade (another tab holds an older connection), a
database written by a newer stepstone, a refused open, and an open that does not answer within
``open_timeout`` all raise :class:`~stepstone.StoreError` with what to do about it.

Browser-only: reaches JavaScript through :mod:`stepstone.browser` alone (never imports ``js`` or
``pyodide`` itself, never a server-only package); the core never imports it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..._errors import SchemaError, StoreError
from ...browser._idb import DatabaseWatch, Program, open_database, run_transaction
from ...browser._values import js_value, py_value
from ._schema import MIGRATIONS, SCHEMA_VERSION, STORES
from ._tx import Tx

__all__ = ["Connection"]

#: A transaction body over the :class:`Tx` view (see :func:`stepstone.browser._idb.run_transaction`).
TxProgram = Callable[..., Program[Any]]


def _upgrader(schema: int) -> Callable[[Any, Any, int], None]:
    """The ``upgradeneeded`` handler taking a database at stepstone schema ``schema`` (0: new,
    foreign or half-made) to :data:`SCHEMA_VERSION`. The IndexedDB version of the database is not
    the schema version (an upgrade bumps it by one, whatever it was), so the schema is read first."""

    def upgrade(db: Any, tx: Any, old_version: int) -> None:
        for migrate in MIGRATIONS[schema if old_version else 0 :]:
            migrate(db, tx)
        tx.objectStore("meta").put(js_value({"key": "schema", "value": SCHEMA_VERSION}))

    return upgrade


async def _run(db: Any, program: TxProgram, stores: Sequence[str], mode: str, durability: str, kwargs: Any) -> Any:
    def make(tx: Any) -> Program[Any]:
        gen: Program[Any] = program(Tx(tx), **kwargs)
        return gen

    return await run_transaction(db, list(stores), mode, make, durability)


async def _schema_version(db: Any) -> int:
    """The stepstone schema of an open database: 0 when it has none (new, foreign or half-made)."""
    names = db.objectStoreNames
    if not names.contains("meta"):
        return 0

    def program(t: Tx) -> Program[int]:
        rec = py_value((yield t.store("meta").get("schema")))
        return int(rec["value"]) if rec else 0

    version: int = await _run(db, program, ["meta"], "readonly", "default", {})
    if version == SCHEMA_VERSION and not all(names.contains(s) for s in STORES):
        return 0  # half-made (or emptied by hand): the upgrade recreates what is missing
    return version


class Connection:
    """The database ``name`` of this origin, open (after :meth:`open`) until :meth:`close`."""

    def __init__(self, name: str, durability: str, open_timeout: float) -> None:
        self.name = name
        self.durability = durability
        self.open_timeout = open_timeout
        self.db: Any = None
        self.lost: str | None = None
        self._watch: DatabaseWatch | None = None

    async def open(self) -> None:
        if self.db is not None:
            return
        db = await open_database(self.name, None, _upgrader(0), self.open_timeout)
        try:
            current = await _schema_version(db)
            if current > SCHEMA_VERSION:
                raise SchemaError(
                    f"IndexedDB database {self.name!r} has schema version {current}, newer than this stepstone "
                    f"knows ({SCHEMA_VERSION}); upgrade stepstone to open it"
                )
            if current < SCHEMA_VERSION:  # migrate forward in a versionchange transaction
                version = int(db.version) + 1
                db.close()
                db = None
                db = await open_database(self.name, version, _upgrader(current), self.open_timeout)
        except BaseException:
            if db is not None:
                db.close()
            raise
        self._attach(db)

    def _attach(self, db: Any) -> None:
        self.db = db
        self.lost = None
        self._watch = DatabaseWatch(db, self._on_lost)

    def _on_lost(self, kind: str) -> None:
        # Another tab wants to upgrade (or the browser dropped the database): let go at once so it
        # is not blocked; later calls fail with a clear message.
        self.lost = (
            f"IndexedDB database {self.name!r} was upgraded by another tab; reload this page"
            if kind == "versionchange"
            else f"the browser closed IndexedDB database {self.name!r} (storage cleared?); reload this page"
        )
        self._let_go()

    def _let_go(self) -> None:
        db, self.db = self.db, None
        if db is not None:
            db.close()

    def close(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None
        self._let_go()

    async def run(self, program: TxProgram, stores: Sequence[str], mode: str = "readwrite", **kwargs: Any) -> Any:
        """Run ``program(tx_view, **kwargs)`` in one transaction and return what it returns, once
        the transaction has completed (committed, for ``readwrite``)."""
        if self.db is None:
            raise StoreError(self.lost or f"IndexedDB store {self.name!r} is not open; call init() first")
        return await _run(self.db, program, stores, mode, self.durability, kwargs)
