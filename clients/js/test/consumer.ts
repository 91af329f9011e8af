// A typed consumer of the demo app (compiled by tests/it/js_client.rs with tsc): every
// call here must type-check against the types sluice-types generated.
import { createClient, SluiceError } from "./index";
import type { Apps } from "./demo-types";

const client = createClient<Apps>({ baseUrl: "http://127.0.0.1:8080" });

export async function main(): Promise<void> {
  const customer = await client.run("demo", "get_customer", { id: 1 });
  const [id, name] = customer.rows[0];
  const checked: [number | null, string | null] = [id, name];
  console.log(checked);
  await client.run("demo", "list_orders", { status: "paid", limit: 5 });
  await client.run("demo", "list_orders");
  for await (const row of client.stream("demo", "orders_by_ids", { ids: [1, 2] })) {
    console.log(row);
  }
  try {
    await client.run("demo", "search_customers", { q: "Ada" });
  } catch (error) {
    if (error instanceof SluiceError) console.log(error.code, error.param, error.requestId);
  }
}
