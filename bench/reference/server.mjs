// The reference Durable Streams server (@durable-streams/server, pinned in bench/reference/package.json) on
// 127.0.0.1, for bench/streams.py.   node bench/reference/server.mjs PORT LONG_POLL_MS [DATA_DIR]
// Prints "ready <url>" once listening; stops on SIGTERM.
import { DurableStreamTestServer } from "@durable-streams/server"

const [port, longPollMs = "30000", dataDir] = process.argv.slice(2)
const server = new DurableStreamTestServer({
  port: Number(port),
  host: "127.0.0.1",
  longPollTimeout: Number(longPollMs),
  ...(dataDir ? { dataDir } : {}),
})
const url = await server.start()
console.log(`ready ${url}`)
process.on("SIGTERM", async () => {
  await server.stop()
  process.exit(0)
})
