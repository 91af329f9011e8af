// The admin console on an SSO-only instance, in Debian's chromium, headless: the sign-in page
// offers the provider and no password form; following it signs in at the provider (the test
// provider finishes its interaction at once, as alice) and comes back to /console signed in.
// Started by tests/it/browser.rs, which passes CHROMIUM and GATEWAY (with provider `corp`,
// labelled Corp). Prints `ok: NAME` or `FAILED: NAME`; exits non-zero if any failed.

import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const GATEWAY = env("GATEWAY");
const browser = await chromium.launch({ executablePath: env("CHROMIUM"), args: ["--no-sandbox"] });
let failed = 0;
async function check(name, body) {
  try {
    await body();
    console.log(`ok: ${name}`);
  } catch (error) {
    failed += 1;
    console.log(`FAILED: ${name}\n${error.stack || error}`);
  }
}

const page = await browser.newPage();
await check("the sign-in page offers the provider and no password", async () => {
  await page.goto(`${GATEWAY}/console`);
  const link = page.getByRole("link", { name: "Sign in with Corp" });
  await link.waitFor();
  const href = await link.getAttribute("href");
  assert.equal(href, "/v1/auth/oidc/corp/start?return_to=%2Fconsole");
  assert.equal(await page.locator("#sign-in").count(), 0, "no password form with SSO only");
  assert.equal(await page.locator('#page input[type="password"]').count(), 0);
});

await check("the provider signs in and the console shows the account", async () => {
  await page.getByRole("link", { name: "Sign in with Corp" }).click();
  await page.waitForURL(`${GATEWAY}/console**`);
  await page.locator("#who-text").filter({ hasText: "alice@example.com" }).waitFor();
  assert.match(await page.locator("#who-text").textContent(), /alice@example\.com \(viewer\)/);
});

await browser.close();
process.exit(failed ? 1 : 0);
