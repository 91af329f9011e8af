// The admin console (/console) in Debian's chromium, headless, driven by playwright-core.
// Started by tests/it/browser.rs, which runs the gateway and the hostile origin and passes:
//   CHROMIUM        the browser binary
//   GATEWAY         a gateway on PostgreSQL with app shop (public) and its query greeting
//                   (SELECT 'hello' AS word) on datasource pg
//   HOSTILE_ORIGIN  a hostile site's pages (another port): frame.html frames ?target=
//   ADMIN_EMAIL     an admin who has not enrolled MFA yet
//   VIEWER_EMAIL    a viewer
//   PASSWORD        both accounts' password
//   PG_HOST, PG_PORT the local PostgreSQL (a datasource the console creates)
//   SHOTS           where the screenshots go (docs/console)
//   RECHECK_GATEWAY another gateway (same catalog) whose clock ADVANCE_CLOCK (a POST) moves
//                   ten minutes on, with DEVELOPER_EMAIL, a developer (PASSWORD too)
// Each check prints `ok: NAME` or `FAILED: NAME`; exits non-zero if any failed. The checks
// run in order on one admin session (the later ones need the earlier ones' state).

import { chromium } from "playwright-core";
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { mkdirSync } from "node:fs";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const CHROMIUM = env("CHROMIUM");
const GATEWAY = env("GATEWAY");
const HOSTILE_ORIGIN = env("HOSTILE_ORIGIN");
const ADMIN_EMAIL = env("ADMIN_EMAIL");
const VIEWER_EMAIL = env("VIEWER_EMAIL");
const PASSWORD = env("PASSWORD");
const PG_HOST = env("PG_HOST");
const PG_PORT = env("PG_PORT");
const SHOTS = env("SHOTS");
const RECHECK_GATEWAY = env("RECHECK_GATEWAY");
const ADVANCE_CLOCK = env("ADVANCE_CLOCK");
const DEVELOPER_EMAIL = env("DEVELOPER_EMAIL");
const CONSOLE = `${GATEWAY}/console`;
mkdirSync(SHOTS, { recursive: true });

// ----- TOTP (RFC 6238: SHA-1, 6 digits, 30 s), as an authenticator app computes it -----------

function base32(text) {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
  let bits = 0;
  let value = 0;
  const out = [];
  for (const c of text.replace(/[\s=]/g, "").toUpperCase()) {
    const index = alphabet.indexOf(c);
    if (index < 0) throw new Error(`not base32: ${c}`);
    value = (value << 5) | index;
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      out.push((value >>> bits) & 0xff);
      value &= (1 << bits) - 1;
    }
  }
  return Buffer.from(out);
}

function totp(secret, step) {
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(step));
  const mac = createHmac("sha1", base32(secret)).update(counter).digest();
  const offset = mac[mac.length - 1] & 0x0f;
  return String((mac.readUInt32BE(offset) & 0x7fffffff) % 1_000_000).padStart(6, "0");
}
const currentStep = () => Math.floor(Date.now() / 1000 / 30);

// ----- Harness ----------------------------------------------------------------------------

const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: ["--no-sandbox"] });
const viewport = { width: 1000, height: 700 };
let failed = false;

/** Watches a page for CSP violations and script errors (API refusals are expected here). */
function watch(page, problems) {
  page.on("console", (message) => {
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      problems.push(message.text());
    }
  });
  page.on("pageerror", (error) => problems.push(String(error)));
}

async function check(name, body) {
  try {
    await body();
    console.log(`ok: ${name}`);
  } catch (error) {
    failed = true;
    console.log(`FAILED: ${name}\n${error.stack ?? error}`);
  }
}

const shot = (page, name) => page.screenshot({ path: `${SHOTS}/${name}.png` });

/** POSTs to the view endpoint (anonymous: app shop is public). */
async function run(query) {
  const response = await fetch(`${GATEWAY}/v1/apps/shop/queries/${query}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: "{}",
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  return body.rows;
}

async function signIn(page, email, url = CONSOLE) {
  await page.goto(url);
  await page.getByLabel("Email").fill(email);
  await page.getByLabel("Password", { exact: true }).fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
}

async function heading(page) {
  return (await page.locator("h1").textContent()).trim();
}

// ----- Without a session --------------------------------------------------------------------

await check("the console has a strict CSP and no console API call works without a session", async () => {
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  const problems = [];
  watch(page, problems);
  const response = await page.goto(`${CONSOLE}#/users`);
  const headers = response.headers();
  const csp = headers["content-security-policy"];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline|unsafe-eval/);
  assert.equal(headers["x-frame-options"], "DENY");
  assert.equal(headers["x-content-type-options"], "nosniff");
  // The shell loads; the page asked for (users) is not shown, the sign-in form is.
  await page.waitForSelector("#sign-in");
  assert.equal(await page.locator("#users").count(), 0);
  assert.equal(await page.isHidden("#nav"), true);
  const statuses = await page.evaluate(async () => {
    const paths = [
      ["GET", "/v1/auth/me"],
      ["GET", "/v1/admin/apps"],
      ["GET", "/v1/admin/apps/shop/queries/greeting"],
      ["GET", "/v1/admin/apps/shop/queries/greeting/history"],
      ["GET", "/v1/admin/datasources"],
      ["POST", "/v1/admin/datasources/pg/test"],
      ["GET", "/v1/admin/users"],
      ["GET", "/v1/admin/audit"],
      ["GET", "/v1/admin/egress"],
      ["GET", "/v1/auth/api-keys"],
      ["POST", "/v1/auth/mfa/enroll"],
    ];
    const out = {};
    for (const [method, path] of paths) {
      const r = await fetch(path, { method, credentials: "same-origin" });
      out[`${method} ${path}`] = `${r.status} ${(await r.json()).error?.code}`;
    }
    return out;
  });
  for (const [call, answer] of Object.entries(statuses)) {
    assert.equal(answer, "401 unauthenticated", call);
  }
  await shot(page, "sign-in");
  assert.deepEqual(problems, [], "no CSP violation or script error");
  await context.close();
});

// ----- The admin's session ------------------------------------------------------------------

const admin = await browser.newContext({ viewport });
const page = await admin.newPage();
const problems = [];
watch(page, problems);
let secret = null;

await check("sign in, enrol MFA (QR code, secret, recovery codes), sign out, sign in with MFA", async () => {
  await signIn(page, ADMIN_EMAIL);
  await page.waitForSelector("text=Admins must use two-factor authentication");
  assert.equal(await heading(page), "Set up two-factor authentication");
  assert.equal(await page.isHidden("#nav"), true, "nothing else until enrolled");
  await page.getByRole("button", { name: "Set up an authenticator app" }).click();
  const qr = page.locator("img.qr");
  await qr.waitFor();
  // The QR code renders (a data: image the CSP allows, not blocked).
  await page.waitForFunction(() => document.querySelector("img.qr").naturalWidth > 0);
  secret = (await page.textContent("#mfa-secret")).trim();
  assert.match(secret, /^[A-Z2-7]{16,}$/);
  await shot(page, "mfa-enrolment");
  const enrolledAt = currentStep();
  await page.getByLabel("Code from the app").fill(totp(secret, enrolledAt));
  await page.getByRole("button", { name: "Turn on two-factor authentication" }).click();
  await page.waitForSelector("#recovery-codes li");
  const codes = await page.$$eval("#recovery-codes li", (items) => items.map((i) => i.textContent));
  assert.equal(codes.length, 10);
  for (const code of codes) assert.match(code, /^[a-z0-9]{5}-[a-z0-9]{5}$/);
  await shot(page, "mfa-recovery-codes");
  await page.getByRole("button", { name: "I have saved these codes" }).click();
  await page.waitForFunction(() => document.querySelector("h1")?.textContent === "Apps and queries");

  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForSelector("#sign-in");
  assert.equal(await page.isHidden("#nav"), true);

  // Again, now with a code: a later step than the one enrolment used (codes never replay).
  await signIn(page, ADMIN_EMAIL);
  const code = page.getByLabel("Authenticator code (or recovery code)");
  await code.waitFor();
  await code.fill(totp(secret, Math.max(currentStep(), enrolledAt + 1)));
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForFunction(() => document.querySelector("h1")?.textContent === "Apps and queries");
  const nav = await page.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(nav, ["Apps and queries", "Datasources", "Users", "API keys", "Audit log", "Egress", "Account"]);
  await page.waitForSelector("#apps tbody tr");
  await shot(page, "apps");
});

await check("the console edits a query, the change serves at once, and a stale second tab gets the conflict", async () => {
  assert.deepEqual(await run("greeting"), [["hello"]]);
  const editor = `${CONSOLE}#/apps/shop/queries/greeting`;
  await page.goto(`${CONSOLE}#/apps/shop`);
  await page.waitForSelector("#queries tbody tr");
  await shot(page, "app");
  // An app member, added from the app's page.
  await page.getByLabel("User", { exact: true }).selectOption({ label: `${VIEWER_EMAIL} (viewer)` });
  await page.getByRole("button", { name: "Add member" }).click();
  await page.waitForSelector(`#members-title ~ table >> text=${VIEWER_EMAIL}`);
  await page.goto(editor);
  const sql = page.getByLabel("SQL", { exact: true });
  await page.waitForFunction(() => document.querySelector("textarea[name=sql]")?.value.includes("hello"));
  // A second tab opens the same query now: its copy goes stale at the first save.
  const second = await admin.newPage();
  watch(second, problems);
  await second.goto(editor);
  await second.waitForFunction(() => document.querySelector("textarea[name=sql]")?.value.includes("hello"));

  await sql.fill("SELECT 'bonjour' AS word");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForFunction(() => /^Saved: catalog revision \d+/.test(document.getElementById("status").textContent));
  assert.deepEqual(await run("greeting"), [["bonjour"]], "the next run serves the edit");

  await second.getByLabel("SQL", { exact: true }).fill("SELECT 'hola' AS word");
  await second.getByRole("button", { name: "Save" }).click();
  await second.waitForSelector("#conflict:not([hidden])");
  assert.match(await second.textContent("#conflict"), /Someone else changed this query/);
  await second.getByRole("button", { name: "Reload their version" }).waitFor();
  await shot(second, "query-conflict");
  assert.deepEqual(await run("greeting"), [["bonjour"]], "the stale save changed nothing");
  await second.getByRole("button", { name: "Reload their version" }).click();
  await second.waitForFunction(() => document.querySelector("textarea[name=sql]")?.value.includes("bonjour"));
  await second.close();

  // A template that does not compile: the problem is shown at its line, nothing changes.
  await sql.fill("SELECT 'x' AS word,\n  {{ params.missing }} AS other");
  await page.getByRole("button", { name: "Save" }).click();
  await page.waitForSelector("#sql-problems li");
  const problem = await page.textContent("#sql-problems li");
  assert.match(problem, /^SQL line 2, column \d+: /, problem);
  assert.match(problem, /missing/);
  await shot(page, "query-compile-error");
  assert.deepEqual(await run("greeting"), [["bonjour"]]);

  // Preview a draft as a user.
  await sql.fill("SELECT 'preview' AS word");
  await page.getByRole("button", { name: "Run the draft" }).click();
  await page.waitForSelector("#preview-result table td");
  assert.equal(await page.textContent("#preview-result td"), "preview");
  assert.deepEqual(await run("greeting"), [["bonjour"]], "a preview stores nothing");

  // History: the original and the edit; rolling back to the original serves it again.
  await page.reload();
  await page.waitForSelector("#history tbody tr:nth-child(2)");
  await page.screenshot({ path: `${SHOTS}/query-editor.png`, fullPage: true });
  const rollback = page.locator("#history button", { hasText: "Roll back to revision" }).first();
  await rollback.click();
  await page.waitForFunction(() => document.querySelector("textarea[name=sql]")?.value.includes("hello"));
  assert.deepEqual(await run("greeting"), [["hello"]], "the rollback serves at once");
  // The rollback is a new revision: three versions now, the newest the original text.
  await page.waitForSelector("#history tbody tr:nth-child(3)");
  assert.match(await page.textContent("#history tbody tr:first-child"), /SELECT 'hello' AS word/);
});

await check("datasources: create one with a write-only password, set it again, test it step by step", async () => {
  const password = "console-secret-canary-42";
  await page.goto(`${CONSOLE}#/datasources`);
  await page.waitForSelector("#datasources tbody tr");
  await page.getByLabel("Name", { exact: true }).fill("made_here");
  await page.getByLabel("Host").fill(PG_HOST);
  await page.getByLabel("Port").fill(PG_PORT);
  await page.getByLabel("Database").fill("test");
  await page.getByLabel("User", { exact: true }).fill("postgres");
  await page.getByLabel("Password (write-only)").fill(password);
  await page.getByLabel("Egress allow (CIDRs, comma-separated)").fill("127.0.0.1/32");
  await page.getByRole("button", { name: "Create datasource" }).click();
  await page.waitForSelector("#datasources tbody tr:nth-child(2)");
  const row = page.locator("#datasources tr", { hasText: "made_here" });
  assert.match(await row.textContent(), /password: set/);

  await page.getByRole("button", { name: "Set password of made_here" }).click();
  await page.locator("#secret-form input[type=password]").fill(`${password}-2`);
  await page.getByRole("button", { name: "Set password", exact: true }).click();
  await page.waitForFunction(() => document.getElementById("status").textContent === "Password of made_here set.");
  await page.waitForSelector("#datasources tbody tr:nth-child(2)");

  await page.getByRole("button", { name: "Test made_here" }).click();
  await page.waitForSelector("#test-result ol li");
  const steps = await page.$$eval("#test-result ol li", (items) => items.map((i) => i.textContent));
  assert.deepEqual(steps.map((s) => s.split(" ").slice(0, 2).join(" ")), [
    "dns ok", "egress ok", "tcp ok", "tls skipped", "authentication ok", "select_1 ok",
  ], steps.join("\n"));
  assert.match(await page.textContent("#test-result h2"), /passed/);
  await shot(page, "datasources");
  // The secret is never shown back, in the page or in what the API sent it.
  const html = await page.content();
  assert.ok(!html.includes(password), "the password is not on the page");
  const listed = await page.evaluate(async () => (await fetch("/v1/admin/datasources")).text());
  assert.ok(!listed.includes(password), "nor in the API's answer");
});

await check("users (disable, enable), API keys (shown once, revoked), audit log filters, egress", async () => {
  await page.goto(`${CONSOLE}#/users`);
  await page.waitForSelector("#users tbody tr");
  await page.getByRole("button", { name: `Disable ${VIEWER_EMAIL}` }).click();
  await page.waitForSelector(`#users tr:has-text("${VIEWER_EMAIL}") >> text=disabled`);
  await page.getByRole("button", { name: `Enable ${VIEWER_EMAIL}` }).click();
  await page.getByRole("button", { name: `Disable ${VIEWER_EMAIL}` }).waitFor();
  // A new account from the form: listed at once, a viewer by default.
  const created = "new.user@example.com";
  const form = page.locator("#new-user");
  await form.getByLabel("Email").fill(created);
  await form.getByLabel("Name").fill("New User");
  await form.getByRole("button", { name: "Create user" }).click();
  await page.waitForSelector(`#users tr:has-text("${created}")`);
  assert.equal(await page.getByLabel(`Role of ${created}`).inputValue(), "viewer");
  await shot(page, "users");

  await page.goto(`${CONSOLE}#/keys`);
  await page.waitForSelector("#create-key");
  await page.getByLabel("Name", { exact: true }).fill("reporting");
  await page.getByLabel("Apps (comma-separated)").fill("shop");
  await page.getByRole("button", { name: "Create key" }).click();
  await page.waitForSelector("#key-value");
  const key = (await page.textContent("#key-value")).trim();
  assert.match(key, /^slk_[\w-]{12}_[\w-]{43}$/);
  await shot(page, "api-keys");
  // Shown once: the list never has it.
  await page.goto(`${CONSOLE}#/audit`);
  await page.goto(`${CONSOLE}#/keys`);
  await page.waitForSelector("#keys tbody tr");
  assert.ok(!(await page.content()).includes(key));
  await page.getByRole("button", { name: "Revoke reporting" }).click();
  await page.waitForSelector('#keys tr:has-text("reporting") >> text=/^revoked/');

  await page.goto(`${CONSOLE}#/audit`);
  await page.waitForSelector("#audit tbody tr");
  const events = await page.$$eval("#audit tbody td:nth-child(2)", (cells) => cells.map((c) => c.textContent));
  for (const event of ["mfa_enrolled", "catalog_changed", "api_key_created", "user_disabled"]) {
    assert.ok(events.includes(event), `${event} in ${events}`);
  }
  await page.getByLabel("event").fill("login_succeeded");
  await page.getByRole("button", { name: "Show" }).click();
  await page.waitForFunction(() => {
    const cells = [...document.querySelectorAll("#audit tbody td:nth-child(2)")];
    return cells.length > 0 && cells.every((c) => c.textContent === "login_succeeded");
  });
  await shot(page, "audit");

  await page.goto(`${CONSOLE}#/egress`);
  await page.waitForSelector("#egress tbody tr");
  assert.match(await page.textContent("#egress"), /made_here/);
  assert.match(await page.textContent("main"), /203\.0\.113\.7/);
  await shot(page, "egress");
  await page.goto(`${CONSOLE}#/account`);
  await page.waitForSelector("dl");
  assert.deepEqual(problems, [], "no CSP violation or script error");
});

await admin.close();

// ----- A viewer -----------------------------------------------------------------------------

await check("a viewer sees no admin pages, and the API refuses them anyway", async () => {
  const context = await browser.newContext({ viewport });
  const viewer = await context.newPage();
  const seen = [];
  watch(viewer, seen);
  await signIn(viewer, VIEWER_EMAIL);
  await viewer.waitForFunction(() => document.querySelector("h1")?.textContent === "Account");
  const nav = await viewer.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(nav, ["Account"]);
  // From the keyboard: the first Tab reaches "Skip to content", which focuses the page.
  await viewer.reload();
  await viewer.waitForFunction(() => document.querySelector("h1")?.textContent === "Account");
  await viewer.keyboard.press("Tab");
  assert.equal(await viewer.evaluate(() => document.activeElement.textContent), "Skip to content");
  await viewer.keyboard.press("Enter");
  assert.equal(await viewer.evaluate(() => document.activeElement.id), "main");
  assert.match(viewer.url(), /#\/account$/);
  await shot(viewer, "viewer");
  for (const hash of ["#/users", "#/datasources", "#/apps", "#/audit", "#/egress", "#/keys"]) {
    await viewer.goto(`${CONSOLE}${hash}`);
    await viewer.waitForFunction(() => document.querySelector("h1")?.textContent === "Not available");
    assert.equal(await viewer.locator("table").count(), 0, hash);
  }
  const statuses = await viewer.evaluate(async () => {
    const out = [];
    for (const path of ["/v1/admin/users", "/v1/admin/apps", "/v1/admin/datasources", "/v1/admin/audit"]) {
      const r = await fetch(path);
      out.push(`${r.status} ${(await r.json()).error?.code}`);
    }
    return out;
  });
  for (const status of statuses) assert.match(status, /^403 /, statuses.join(", "));
  assert.deepEqual(seen, []);
  await context.close();
});

await check("a change that needs fresh authentication asks for the password, then goes through", async () => {
  const context = await browser.newContext({ viewport });
  const developer = await context.newPage();
  const seen = [];
  watch(developer, seen);
  await signIn(developer, DEVELOPER_EMAIL, `${RECHECK_GATEWAY}/console`);
  await developer.waitForFunction(() => document.querySelector("h1")?.textContent === "Apps and queries");
  const nav = await developer.$$eval("#nav a", (links) => links.map((a) => a.textContent));
  assert.deepEqual(nav, ["Apps and queries", "API keys", "Account"]);
  await developer.goto(`${RECHECK_GATEWAY}/console#/keys`);
  await developer.waitForSelector("#create-key");
  // Ten minutes later (the server's clock), the sign-in is no longer fresh.
  assert.equal((await fetch(ADVANCE_CLOCK, { method: "POST" })).status, 200);
  await developer.getByLabel("Name", { exact: true }).fill("after-a-while");
  await developer.getByLabel("Apps (comma-separated)").fill("shop");
  await developer.getByRole("button", { name: "Create key" }).click();
  const dialog = developer.getByRole("dialog", { name: "Confirm it is you" });
  await dialog.waitFor();
  assert.equal(await developer.isHidden("#reauth-code"), true, "no code field without MFA");
  await dialog.getByLabel("Your password").fill("not the password");
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await developer.waitForFunction(() => document.getElementById("reauth-error").textContent.length > 0);
  await dialog.getByLabel("Your password").fill(PASSWORD);
  await shot(developer, "reauth");
  await dialog.getByRole("button", { name: "Confirm" }).click();
  await developer.waitForSelector("#key-value");
  assert.match((await developer.textContent("#key-value")).trim(), /^slk_/);
  assert.equal(await dialog.isVisible(), false);
  assert.deepEqual(seen, []);
  await context.close();
});

await check("the console cannot be framed", async () => {
  const context = await browser.newContext({ viewport });
  const hostile = await context.newPage();
  await hostile.goto(`${HOSTILE_ORIGIN}/frame.html?target=${encodeURIComponent(CONSOLE)}`);
  await hostile.waitForTimeout(500);
  const framed = hostile.frames().find((frame) => frame.url().startsWith(CONSOLE));
  const content = framed
    ? await framed.evaluate(() => document.querySelector("h1")?.textContent ?? null).catch(() => null)
    : null;
  assert.equal(content, null, "the framed console must not render");
  await context.close();
});

await browser.close();
process.exit(failed ? 1 : 0);
