// The browser tests: Debian's chromium, headless, driven by playwright-core. Started by
// tests/it/browser.rs, which runs the gateways and the pages' origins and passes:
//   CHROMIUM        the browser binary
//   DEMO            the `sluice demo` instance (its /demo page)
//   GATEWAY         a gateway on PostgreSQL with apps shop (public, CORS for APP_ORIGIN),
//                   staff (workspace, CORS for APP_ORIGIN) and closed (workspace, no CORS)
//   APP_ORIGIN      an app's pages on another origin (a second port)
//   HOSTILE_ORIGIN  a hostile site's pages (a third port)
//   EMAIL, PASSWORD a viewer's account on GATEWAY
// Exits non-zero on the first failed check, naming it.

import { chromium } from "playwright-core";
import assert from "node:assert/strict";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CHROMIUM = env("CHROMIUM");
const DEMO = env("DEMO");
const GATEWAY = env("GATEWAY");
const APP_ORIGIN = env("APP_ORIGIN");
const HOSTILE_ORIGIN = env("HOSTILE_ORIGIN");
const EMAIL = env("EMAIL");
const PASSWORD = env("PASSWORD");
const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
let failed = false;
async function check(name, body) {
  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = [];
  // Console errors (a CSP violation is one) and failed loads, but the favicon nobody serves
  // (its 404 shows in the console without its URL, hence the two listeners).
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(message.text());
    }
  });
  page.on("response", (response) => {
    if (response.status() >= 400 && !response.url().endsWith("/favicon.ico")) {
      problems.push(`${response.status()} ${response.url()}`);
    }
  });
  page.on("pageerror", (error) => problems.push(String(error)));
  try {
    await body(page, problems);
    console.log(`ok: ${name}`);
  } catch (error) {
    failed = true;
    console.log(`FAILED: ${name}\n${error.stack ?? error}\nconsole errors: ${JSON.stringify(problems)}`);
  } finally {
    await context.close();
  }
}

await check("the demo page runs a query and the rows appear", async (page, problems) => {
  const response = await page.goto(`${DEMO}/demo`);
  const csp = response.headers()["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  await page.selectOption("select[name=status]", "paid");
  await page.fill("input[name=limit]", "7");
  await page.click("#orders button[value=run]");
  await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 7);
  const headers = await page.$$eval("#result thead th", (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(headers, ["id", "customer", "status", "quantity", "total", "created_at"]);
  const statuses = await page.$$eval("#result tbody tr td:nth-child(3)", (cells) => cells.map((c) => c.textContent));
  assert.deepEqual(new Set(statuses), new Set(["paid"]));
  // The same through the NDJSON stream.
  await page.fill("input[name=limit]", "5");
  await page.click("#orders button[value=stream]");
  await page.waitForFunction(() => /^5 row\(s\) in/.test(document.getElementById("status").textContent));
  assert.equal(await page.locator("#result tbody tr").count(), 5);
  assert.deepEqual(problems, [], "no console errors (a CSP violation would be one)");
});

await check("the demo page shows an error that names the param", async (page) => {
  await page.goto(`${DEMO}/demo`);
  await page.fill("#customer input[name=id]", "one");
  await page.click("#customer button");
  await page.waitForSelector("#error:not([hidden])");
  const text = await page.textContent("#error");
  assert.match(text, /^invalid_params \(param id\): /);
  assert.match(text, /request [0-9a-f]{32}/);
  await page.fill("#customer input[name=id]", "1");
  await page.click("#customer button");
  await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 1);
  assert.equal(await page.textContent("#result tbody td:nth-child(2)"), "Ada Lovelace");
  assert.equal(await page.isHidden("#error"), true);
});

await check("NDJSON: the first rows show before the last are produced", async (page) => {
  await page.goto(`${APP_ORIGIN}/app.html`);
  await page.waitForFunction(() => window.sluice !== undefined);
  // Five rows, 0.3 s apart (pg_sleep between them).
  await page.evaluate((gateway) => {
    window.done = false;
    window.times = [];
    const list = document.getElementById("rows");
    const client = window.sluice.createClient({ baseUrl: gateway, credentials: "include" });
    const started = performance.now();
    (async () => {
      for await (const row of client.stream("shop", "slow")) {
        const item = document.createElement("li");
        item.textContent = String(row[0]);
        list.append(item);
        window.times.push(performance.now() - started);
      }
      window.done = true;
    })().catch((error) => {
      window.failure = String(error);
      window.done = true;
    });
  }, GATEWAY);
  await page.waitForSelector("#rows li");
  const shown = await page.locator("#rows li").count();
  const doneEarly = await page.evaluate(() => window.done);
  assert.equal(doneEarly, false, "the first row was on the page while the query still ran");
  assert.ok(shown < 5, `only ${shown} of 5 rows when the first showed`);
  await page.waitForFunction(() => window.done === true, null, { timeout: 20_000 });
  assert.equal(await page.evaluate(() => window.failure), undefined);
  const times = await page.evaluate(() => window.times);
  assert.equal(times.length, 5);
  assert.ok(times[4] - times[0] >= 900, `rows arrived over ${times[4] - times[0]} ms: ${times}`);
});

await check("another origin calls with credentials when allowed, and is refused when not", async (page) => {
  await page.goto(`${APP_ORIGIN}/app.html`);
  await page.waitForFunction(() => window.sluice !== undefined);
  const outcome = await page.evaluate(
    async ({ gateway, email, password }) => {
      const client = window.sluice.createClient({ baseUrl: gateway, credentials: "include" });
      const attempt = async (app) => {
        try {
          const result = await client.run(app, "q");
          return { rows: result.rows };
        } catch (error) {
          return { code: error.code, status: error.status };
        }
      };
      const before = await attempt("staff");
      await client.login({ email, password });
      const allowed = await attempt("staff");
      const refused = await attempt("closed");
      return { before, allowed, refused };
    },
    { gateway: GATEWAY, email: EMAIL, password: PASSWORD },
  );
  assert.deepEqual(outcome.before, { code: "unauthenticated", status: 401 });
  assert.deepEqual(outcome.allowed, { rows: [[1]] });
  // The browser refuses to send it: the preflight is answered 403 cors_refused.
  assert.deepEqual(outcome.refused, { code: "network_error", status: 0 });
});

await check("a hostile page's form POST with the session cookie is refused by the CSRF check", async (page) => {
  // Signed in on the gateway from the app's origin first (the cookie is in this browser).
  await page.goto(`${APP_ORIGIN}/app.html`);
  await page.waitForFunction(() => window.sluice !== undefined);
  await page.evaluate(
    async ({ gateway, email, password }) => {
      const client = window.sluice.createClient({ baseUrl: gateway, credentials: "include" });
      await client.login({ email, password });
    },
    { gateway: GATEWAY, email: EMAIL, password: PASSWORD },
  );
  await page.goto(`${HOSTILE_ORIGIN}/hostile.html?target=${encodeURIComponent(`${GATEWAY}/v1/apps/staff/queries/q`)}`);
  const [response] = await Promise.all([page.waitForNavigation(), page.click("button")]);
  assert.equal(response.status(), 403);
  const body = JSON.parse(await page.textContent("body"));
  assert.equal(body.error.code, "csrf_refused");
});

await check("the demo page cannot be framed", async (page) => {
  await page.goto(`${HOSTILE_ORIGIN}/frame.html?target=${encodeURIComponent(`${DEMO}/demo`)}`);
  await page.waitForTimeout(500);
  const framed = page.frames().find((frame) => frame.url().startsWith(`${DEMO}/demo`));
  const content = framed ? await framed.evaluate(() => document.querySelector("h1")?.textContent ?? null).catch(() => null) : null;
  assert.equal(content, null, "the framed page must not render");
});

await browser.close();
process.exit(failed ? 1 : 0);
