// The npm @durable-streams/client IdempotentProducer writing JSON messages {"i": n} into a stream.
//   node npm_producer.mjs URL FROM COUNT PRODUCER_ID [close|detach] [EPOCH] [PAUSE_EVERY]
// Prints one JSON line when done: {"ok", "epoch", "nextSeq", "lastOffset", "errors"}.
// Exits 1 when the producer reported an error (nothing is retried by the npm producer).
import { DurableStream, IdempotentProducer } from "@durable-streams/client"

const [url, from, count, producerId, end = "close", epoch = "0", pauseEvery = "250"] = process.argv.slice(2)
const errors = []
const handle = new DurableStream({ url, contentType: "application/json" })
const producer = new IdempotentProducer(handle, producerId, {
  autoClaim: true,
  epoch: Number(epoch),
  lingerMs: 2,
  maxInFlight: 5,
  onError: (err) => errors.push(String(err && err.message ? err.message : err)),
})
const first = Number(from)
for (let i = first; i < first + Number(count); i++) {
  producer.append(JSON.stringify({ i }))
  if (i % Number(pauseEvery) === 0) await new Promise((resolve) => setTimeout(resolve, 1))
}
try {
  if (end === "close") await producer.close()
  else await producer.detach()
} catch (err) {
  errors.push(String(err && err.message ? err.message : err))
}
console.log(JSON.stringify({
  ok: errors.length === 0,
  epoch: producer.epoch,
  nextSeq: producer.nextSeq,
  lastOffset: producer.lastSuccessfulOffset ?? null,
  errors,
}))
process.exit(errors.length === 0 ? 0 : 1)
