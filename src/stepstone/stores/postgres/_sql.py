"""The PostgreSQL store's hot statements, each one round trip: the claim, finishing a run, creating
a run, appending events (and a step), and the run-change feed's horizon. Text only; the store
(``_store.py``) runs them. Why each is shaped as it is — data-modifying CTEs, ``FOR UPDATE``
where a concurrent change must be seen, ``SKIP LOCKED`` for claims — is said beside it.
"""

from __future__ import annotations

from .._rows import RUN_COLUMNS, STEP_COLUMNS
from ._waits import V

__all__ = [
    "APPENDS",
    "CANDIDATE",
    "CLAIM",
    "CLAIM_FAST",
    "CREATE",
    "FINISH",
    "HORIZON",
    "KEY_FREE",
    "NO_FSYNC",
    "RUN_SELECT",
]

#: Versions below this are final (see ``_feed.py``): the oldest transaction id of this database
#: still in flight (or the next one), shifted as versions are. One statement of its own: its
#: snapshot must be older than the statement that reads the feed.
HORIZON = """
SELECT LEAST(
    pg_snapshot_xmax(s)::text::bigint,
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
      WHERE (x::text::bigint & 4294967295) IN (
        SELECT backend_xid::text::bigint FROM pg_stat_activity
         WHERE datname = current_database() AND backend_xid IS NOT NULL))
) << 16
FROM pg_current_snapshot() AS s"""

RUN_SELECT = f"SELECT {RUN_COLUMNS} FROM runs"

#: Claims and lease renewals commit without waiting for the WAL flush (``SET LOCAL`` from inside
#: the statement): losing one to a database crash only means the run is claimed again, and any
#: later synchronous commit — the run's first step — flushes it first, as the SQLite store does.
NO_FSYNC = "set_config('synchronous_commit', 'off', true)"

#: What claim_next may take: runnable, of one of the caller's jobs, not excluded, and first of its
#: concurrency key (no other unfinished run of the key is running, parked or older).
KEY_FREE = """({a}.concurrency_key IS NULL OR NOT EXISTS (
    SELECT 1 FROM runs o WHERE o.concurrency_key = {a}.concurrency_key AND o.id <> {a}.id
      AND (o.status IN ('running', 'suspended') OR (o.status = 'pending' AND o.pos < {a}.pos))))"""
_MATCH = """({a}.job_name = ANY(%(names)s::text[]) OR ({a}.job_name, {a}.job_version) IN (
    SELECT n, v FROM unnest(%(pn)s::text[], %(pv)s::text[]) AS p(n, v)))"""
CANDIDATE = f"""
SELECT r.id, r.status, r.wait, r.concurrency_key FROM runs r
WHERE r.id = ANY(ARRAY(
    (SELECT a.id FROM runs a
      WHERE a.status IN ('pending', 'running')
        AND (a.status = 'pending' OR a.lease_expires_at IS NULL OR a.lease_expires_at < %(now)s)
        AND {_MATCH.format(a="a")} AND {KEY_FREE.format(a="a")} AND a.id <> ALL(%(skip)s::text[])
      ORDER BY a.pos LIMIT 32)
    UNION ALL
    (SELECT w.id FROM runs w
      WHERE w.status = 'suspended' AND w.wake_at <= %(now)s
        AND {_MATCH.format(a="w")} AND {KEY_FREE.format(a="w")} AND w.id <> ALL(%(skip)s::text[])
      ORDER BY w.wake_at LIMIT 32)))
  AND (r.status = 'pending'
       OR (r.status = 'running' AND (r.lease_expires_at IS NULL OR r.lease_expires_at < %(now)s))
       OR (r.status = 'suspended' AND r.wake_at <= %(now)s))
ORDER BY r.pos LIMIT 1
FOR UPDATE SKIP LOCKED"""

CLAIM = f"""
UPDATE runs SET status = 'running', owner = %(owner)s, epoch = epoch + 1, lease_expires_at = %(lease)s,
    started_at = COALESCE(started_at, %(now)s), updated_at = %(now)s, wait = NULL, wake_at = NULL,
    awaiting = 0, version = {V}
WHERE id = %(id)s RETURNING {RUN_COLUMNS}, {NO_FSYNC}"""

_QUALIFIED = ", ".join(f"runs.{c.strip()}" for c in RUN_COLUMNS.split(","))

#: The common claim in one statement: the oldest candidate, taken at once unless it has a
#: concurrency key (then the transaction below, under the key's lock, takes it).
CLAIM_FAST = f"""
WITH c AS ({CANDIDATE}),
u AS (UPDATE runs SET status = 'running', owner = %(owner)s, epoch = runs.epoch + 1, lease_expires_at = %(lease)s,
          started_at = COALESCE(runs.started_at, %(now)s), updated_at = %(now)s, wait = NULL, wake_at = NULL,
          awaiting = 0, version = {V}
      FROM c WHERE runs.id = c.id AND c.concurrency_key IS NULL RETURNING {_QUALIFIED}, {NO_FSYNC})
SELECT c.status, c.wait, c.concurrency_key, u.* FROM c LEFT JOIN u ON u.id = c.id"""

#: Finishing in one statement: lock the run (fenced), end it with its events, and count it off
#: its waiting parent — the child's row is locked before the parent's, as everywhere. ``held``
#: (FOR UPDATE) sees the newest row even when a parent suspended after this statement began; so
#: that ``p`` does too, its WHERE names only the parent's id (a row updated since the snapshot is
#: then re-read, EvalPlanQual) and whether the parent is parked is decided in the SET.
FINISH = f"""
WITH held AS (SELECT id, awaited_by, concurrency_key FROM runs
              WHERE id = %(id)s AND epoch = %(epoch)s AND status = 'running' FOR UPDATE),
r AS (UPDATE runs SET status = %(status)s, output = %(output)s, error = %(error)s, finished_at = %(now)s,
          updated_at = %(now)s, expires_at = %(expires)s, owner = NULL, lease_expires_at = NULL, wait = NULL,
          wake_at = NULL, awaited_by = NULL, progress = COALESCE(%(progress)s, runs.progress),
          last_seq = runs.last_seq + %(n)s, version = {V}
      FROM held WHERE runs.id = held.id RETURNING {_QUALIFIED}),
e AS (INSERT INTO events (run_id, seq, type, data, at)
      SELECT r.id, r.last_seq - %(n)s + x.i, x.type, x.data, x.at FROM r,
             unnest(%(types)s::text[], %(datas)s::text[], %(ats)s::float8[]) WITH ORDINALITY AS x(type, data, at, i)),
p AS (UPDATE runs SET
          awaiting = CASE WHEN runs.status = 'suspended' THEN runs.awaiting - 1 ELSE runs.awaiting END,
          wake_at = CASE WHEN runs.status = 'suspended' AND (runs.awaiting - 1 <= 0 OR %(bad)s)
                         THEN %(now)s ELSE runs.wake_at END
      FROM held WHERE runs.id = held.awaited_by RETURNING runs.status, runs.wake_at)
SELECT held.concurrency_key, (SELECT min(wake_at) FROM p WHERE status = 'suspended'), r.* FROM held, r"""

CREATE = f"""
WITH ins AS (
    INSERT INTO runs (id, job_name, job_version, status, input, labels, idempotency_key, concurrency_key,
                      created_at, updated_at, last_seq, version, parent_id, parent_step)
    VALUES (%(id)s, %(job)s, %(jv)s, 'pending', %(input)s, %(labels)s, %(idem)s, %(ckey)s,
            %(at)s, %(at)s, 0, {V}, %(parent)s, %(pstep)s)
    ON CONFLICT DO NOTHING
    RETURNING {RUN_COLUMNS}),
l AS (INSERT INTO run_labels (run_id, key, value)
      SELECT ins.id, x.k, x.v FROM ins, unnest(%(lk)s::text[], %(lv)s::text[]) AS x(k, v)),
e AS (INSERT INTO events (run_id, seq, type, data, at) SELECT ins.id, 0, %(etype)s, %(edata)s, %(eat)s FROM ins)
SELECT * FROM ins"""


def _append_statement(fenced: bool, progress: bool, step: bool) -> str:
    """One statement: fence and move ``last_seq`` on, insert the events (and the step record).
    ``last_write`` takes the call's token, so a retry whose first attempt committed (its answer
    lost with the connection) finds it applied instead of appending the events twice."""
    sets = "last_seq = last_seq + %(n)s, updated_at = COALESCE(%(at)s::float8, updated_at), last_write = %(token)s"
    if progress:
        sets += f", progress = %(progress)s, version = {V}"
    where = "id = %(id)s AND last_write IS DISTINCT FROM %(token)s"
    where += " AND epoch = %(epoch)s AND status = 'running'" if fenced else ""
    sql = (
        f"WITH r AS (UPDATE runs SET {sets} WHERE {where} RETURNING last_seq), "
        "e AS (INSERT INTO events (run_id, seq, type, data, at) "
        "SELECT %(id)s, r.last_seq - %(n)s + x.i, x.type, x.data, x.at FROM r, "
        "unnest(%(types)s::text[], %(datas)s::text[], %(ats)s::float8[]) WITH ORDINALITY AS x(type, data, at, i))"
    )
    if step:
        sql += (
            f", s AS (INSERT INTO steps (run_id, {STEP_COLUMNS}) "
            "SELECT %(id)s, %(s0)s, %(s1)s, %(s2)s, %(s3)s, %(s4)s, %(s5)s, %(s6)s, %(s7)s, %(s8)s, %(s9)s FROM r "
            "ON CONFLICT (run_id, name) DO UPDATE SET idx = excluded.idx, status = excluded.status, "
            "output = excluded.output, error = excluded.error, started_at = excluded.started_at, "
            "completed_at = excluded.completed_at, attempt = excluded.attempt, "
            "run_attempt = excluded.run_attempt, retry_at = excluded.retry_at)"
        )
    return sql + " SELECT last_seq FROM r"


APPENDS = {(f, p, s): _append_statement(f, p, s) for f in (False, True) for p in (False, True) for s in (False, True)}
