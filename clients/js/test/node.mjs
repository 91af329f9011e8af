// The built client (dist/index.js) in Node against a running `sluice demo` (DEMO): whole
// results, streamed rows, an error naming its param; and the opt-in 429 retry against a
// fake fetch. Run by tests/it/js_client.rs; exits non-zero on a failed check.
import assert from "node:assert/strict";
import { createClient, SluiceError } from "../dist/index.js";

const client = createClient({ baseUrl: process.env.DEMO });

const result = await client.run("demo", "list_orders", { status: "paid", limit: 3 });
assert.deepEqual(result.columns.map((c) => c.name), ["id", "customer", "status", "quantity", "total", "created_at"]);
assert.equal(result.rows.length, 3);
assert.equal(result.rowCount, 3);
assert.equal(result.truncated, false);

let columns;
const streamed = [];
const rows = client.stream("demo", "orders_by_ids", { ids: [3, 1, 2] }, { onColumns: (c) => (columns = c) });
let next;
while (!(next = await rows.next()).done) streamed.push(next.value);
assert.deepEqual(columns.map((c) => c.name), ["id", "status", "total"]);
assert.deepEqual(streamed.map((row) => row[0]), [1, 2, 3]);
assert.deepEqual(next.value, { rowCount: 3, truncated: false });

await assert.rejects(client.run("demo", "get_customer", { id: "one" }), (error) => {
  assert.ok(error instanceof SluiceError);
  assert.equal(error.status, 400);
  assert.equal(error.code, "invalid_params");
  assert.equal(error.param, "id");
  assert.match(error.requestId, /^[0-9a-f]{32}$/);
  return true;
});
await assert.rejects(client.stream("demo", "get_customer", {}).next(), (error) => {
  assert.equal(error.code, "invalid_params");
  assert.equal(error.param, "id");
  return true;
});

// Retry on 429, honouring Retry-After, only when asked for.
function fakeFetch(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push(url);
    const [status, headers, body] = answers.shift();
    return new Response(JSON.stringify(body), { status, headers });
  };
  return { fetch, calls };
}
const limited = [429, { "retry-after": "0", "content-type": "application/json" }, { error: { code: "rate_limited", message: "slow down", request_id: "r1" } }];
const ok = [200, { "content-type": "application/json" }, { columns: [], rows: [], row_count: 0 }];
{
  const { fetch, calls } = fakeFetch([limited, ok]);
  const retrying = createClient({ baseUrl: "http://x", fetch, retry: true });
  assert.equal((await retrying.run("a", "q")).rowCount, 0);
  assert.equal(calls.length, 2);
}
{
  const { fetch, calls } = fakeFetch([limited, ok]);
  const plain = createClient({ baseUrl: "http://x", fetch });
  await assert.rejects(plain.run("a", "q"), (error) => error.code === "rate_limited" && error.retryAfter === 0 && error.requestId === "r1");
  assert.equal(calls.length, 1);
}
{
  const long = [429, { "retry-after": "60", "content-type": "application/json" }, limited[2]];
  const { fetch, calls } = fakeFetch([long, ok]);
  const retrying = createClient({ baseUrl: "http://x", fetch, retry: { retries: 3, maxDelayMs: 5000 } });
  await assert.rejects(retrying.run("a", "q"), (error) => error.code === "rate_limited" && error.retryAfter === 60);
  assert.equal(calls.length, 1, "a Retry-After past maxDelayMs is not waited for");
}
console.log("ok: node client");
