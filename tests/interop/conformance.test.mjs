// The official Durable Streams conformance suite (pinned in package.json), run by vitest against
// the server named by CONFORMANCE_TEST_URL. tests/interop/test_conformance.py starts a real
// `stepstone serve` on SQLite and runs this file; see the README, "Durable Streams".
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

runConformanceTests({
  baseUrl: process.env.CONFORMANCE_TEST_URL,
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONGPOLL_MS ?? 20000),
  subscriptions: process.env.CONFORMANCE_SUBSCRIPTIONS === "1",
})
