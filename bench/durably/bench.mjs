// @coji/durably on the same shapes as bench/steps.py: node bench.mjs RUNS STEPS [CONCURRENCY]
// Prints one JSON line: steps/s per set-up, and trigger -> start latency at its default poll.
import { createDurably, defineJob } from "@coji/durably"
import Database from "better-sqlite3"
import { SqliteDialect } from "kysely"
import { LibsqlDialect } from "@libsql/kysely-libsql"
import { createClient } from "@libsql/client"
import { mkdtempSync, rmSync, readFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { z } from "zod"

const [runs, steps, concurrency] = process.argv.slice(2).map(Number)
const version = JSON.parse(readFileSync(new URL("./node_modules/@coji/durably/package.json", import.meta.url))).version

function job(name, steps, onStart) {
  return defineJob({
    name,
    input: z.object({}),
    run: async (step) => {
      onStart?.()
      let total = 0
      for (let i = 0; i < steps; i++) total += await step.run(`s${i}`, async () => i)
      return { total }
    },
  })
}

async function throughput(dialect, runs, steps, concurrency) {
  const durably = createDurably({ dialect, pollingIntervalMs: 1000, maxConcurrentRuns: concurrency || 1 }).register({
    bench: job("bench", steps),
  })
  const { bench } = durably.jobs
  await durably.init()
  const t0 = performance.now()
  const ids = []
  for (let r = 0; r < runs; r++) ids.push((await bench.trigger({})).id)
  for (const id of ids) await waitFor(durably, id)
  const seconds = (performance.now() - t0) / 1000
  await durably.stop()
  return (runs * steps) / seconds
}

async function waitFor(durably, id) {
  for (;;) {
    const run = await durably.getRun(id)
    if (run && ["completed", "failed", "cancelled"].includes(run.status)) return run
    await new Promise((r) => setTimeout(r, 5))
  }
}

async function latency(dialect, samples) {
  let started = 0
  const durably = createDurably({ dialect }).register({ lat: job("lat", 1, () => (started = performance.now())) })
  const { lat } = durably.jobs
  await durably.init()
  const out = []
  for (let i = 0; i < samples; i++) {
    const t0 = performance.now()
    const run = await lat.trigger({})
    await waitFor(durably, run.id)
    out.push(started - t0)
  }
  await durably.stop()
  out.sort((a, b) => a - b)
  return out[Math.floor(out.length / 2)]
}

const dir = mkdtempSync(join(tmpdir(), "durably-bench-"))
try {
  const wal = (file, synchronous) => {
    const db = new Database(file)
    db.pragma("journal_mode = WAL")
    if (synchronous) db.pragma(`synchronous = ${synchronous}`)
    return db
  }
  const result = { version, stepsPerSecond: {} }
  result.stepsPerSecond["better-sqlite3 WAL, synchronous=FULL (its default)"] = await throughput(
    new SqliteDialect({ database: wal(join(dir, "b.db")) }), runs, steps, concurrency)
  result.stepsPerSecond["better-sqlite3 WAL, synchronous=NORMAL"] = await throughput(
    new SqliteDialect({ database: wal(join(dir, "n.db"), "NORMAL") }), runs, steps, concurrency)
  result.stepsPerSecond["libsql (README set-up)"] = await throughput(
    new LibsqlDialect({ client: createClient({ url: `file:${join(dir, "l.db")}` }) }), runs, steps, concurrency)
  if (runs === 1) result.triggerToStartMs = await latency(new SqliteDialect({ database: wal(join(dir, "lat.db")) }), 10)
  console.log(JSON.stringify(result))
} finally {
  rmSync(dir, { recursive: true, force: true })
}
