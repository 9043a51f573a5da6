"""The PostgreSQL store: many stepstone servers on one database, woken by LISTEN/NOTIFY.

``_store`` (runs, steps, events, the claim, the run-change feed), ``_waits`` (suspension, events,
child runs), ``_streams`` (Durable Streams), ``_schema`` (tables, migrations under an advisory
lock), ``_conn`` (the URL, the pool, retrying across lost connections), ``_listen`` (one LISTEN
connection per store, batched NOTIFY), ``_liveness`` (owner locks as session advisory locks) and
``_sql`` (the one-round-trip statements of the hot path).

Needs the ``postgres`` extra (psycopg 3 and psycopg_pool); imported only when a
``postgresql://`` URL is opened, never on the Pyodide path.
"""

from ._liveness import AdvisoryLockLiveness
from ._store import PostgresStore

__all__ = ["AdvisoryLockLiveness", "PostgresStore"]
