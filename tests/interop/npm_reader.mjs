// The npm @durable-streams/client reading a JSON stream live from an offset until it closes.
//   node npm_reader.mjs URL [OFFSET] [LIVE: sse|long-poll|true]
// Prints one JSON line: {"items": [...], "offset": "<last offset>", "closed": true}.
import { stream } from "@durable-streams/client"

const [url, offset = "-1", live = "sse"] = process.argv.slice(2)
const res = await stream({ url, offset, live: live === "true" ? true : live })
const items = []
let last = offset
let closed = false
await new Promise((resolve, reject) => {
  res.subscribeJson(async (batch) => {
    for (const item of batch.items) items.push(item)
    last = batch.offset
    if (batch.streamClosed) {
      closed = true
      resolve()
    }
  })
  // `closed` settles before the last batch reaches the subscriber: only its errors matter here
  res.closed.catch(reject)
})
console.log(JSON.stringify({ items, offset: last, closed }))
