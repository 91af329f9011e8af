// A consumer with a wrong param type: tsc must refuse it (tests/it/js_client.rs).
import { createClient } from "./index";
import type { Apps } from "./demo-types";

const client = createClient<Apps>({ baseUrl: "http://127.0.0.1:8080" });

export async function main(): Promise<void> {
  await client.run("demo", "get_customer", { id: "one" });
}
