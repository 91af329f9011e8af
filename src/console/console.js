// The Sluice admin console: one framework-free ES module over the instance's JSON API
// (/v1/auth/*, /v1/admin/*), same-origin, with the session cookie. It keeps no data of its
// own: each page asks the API when it is shown, and the API decides what the caller may see.
// No inline script or style, no eval, no HTML parsing: every node is built with the DOM API.

const $ = (id) => document.getElementById(id);

/** An element: h("p", {class: "x", onclick: f}, "text", child, [more]). */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      node.addEventListener(name.slice(2), value);
    } else if (name === "class") {
      node.className = value;
    } else if (name === "for") {
      node.htmlFor = value;
    } else if (name === "value") {
      node.value = value;
    } else if (value === true) {
      node.setAttribute(name, "");
    } else {
      node.setAttribute(name, String(value));
    }
  }
  append(node, children);
  return node;
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

let fieldCount = 0;
/** A labelled input (or select/textarea): the label names it for screen readers. */
function field(label, control, hint) {
  const id = control.id || `f${++fieldCount}`;
  control.id = id;
  const parts = [h("label", { for: id }, label), control];
  if (hint) {
    const hintId = `${id}-hint`;
    control.setAttribute("aria-describedby", hintId);
    parts.push(h("span", { id: hintId, class: "muted" }, hint));
  }
  return h("div", { class: "field" }, parts);
}

const when = (seconds) =>
  seconds ? new Date(seconds * 1000).toISOString().replace("T", " ").slice(0, 19) + " UTC" : "";

// ----- Status and errors ------------------------------------------------------------------

function say(text) {
  $("status").textContent = text;
}

function clearError() {
  $("error").hidden = true;
  $("error").replaceChildren();
}

/** Shows an API error (code, message, request id) in the alert region; `extra` adds nodes. */
function showError(error, ...extra) {
  const box = $("error");
  const lines = [];
  if (error instanceof ApiError) {
    lines.push(h("p", {}, h("strong", {}, error.code), error.param ? ` (${error.param})` : "", ": ", error.message));
    if (error.requestId) lines.push(h("p", { class: "muted" }, `request ${error.requestId}`));
  } else {
    lines.push(h("p", {}, String(error && error.message ? error.message : error)));
  }
  box.replaceChildren(...lines, ...extra);
  box.hidden = false;
}

// ----- The API ----------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || `http_${status}`;
    this.param = e.param;
    this.problems = e.problems || [];
    this.requestId = e.request_id;
  }
}

/**
 * Calls the API. 401 `unauthenticated` shows the sign-in form; 403 `fresh_auth_required`
 * asks for the password (and a code) and tries once more; 403 `mfa_enrolment_required`
 * opens the enrolment page. Other errors are thrown for the page to show.
 */
async function api(method, path, { body, headers = {}, retry = true, quiet = false } = {}) {
  const init = { method, credentials: "same-origin", headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, { error: { code: "network_error", message: "the server could not be reached" } });
  }
  const text = await response.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = text;
  }
  if (response.ok) return { data, etag: response.headers.get("ETag"), status: response.status };
  const error = new ApiError(response.status, data);
  if (!quiet) {
    if (error.code === "fresh_auth_required" && retry) {
      await reauthenticate();
      return api(method, path, { body, headers, retry: false });
    }
    if (error.code === "unauthenticated") {
      me = null;
      render();
    } else if (error.code === "mfa_enrolment_required" && me) {
      me.mfa_enrolment_required = true;
      render();
    }
  }
  throw error;
}

const enc = encodeURIComponent;

// ----- Re-authentication ------------------------------------------------------------------

let reauthWaiting = null;

/** Opens the re-auth dialog; resolves once POST /v1/auth/reauth accepted it. */
function reauthenticate() {
  if (reauthWaiting) return reauthWaiting.promise;
  const dialog = $("reauth");
  const form = $("reauth-form");
  form.reset();
  $("reauth-error").textContent = "";
  $("reauth-code").closest("p").hidden = !(me && me.mfa_enabled);
  let resolve;
  let reject;
  const promise = new Promise((ok, fail) => {
    resolve = ok;
    reject = fail;
  });
  reauthWaiting = { promise, resolve, reject };
  dialog.showModal();
  $("reauth-password").focus();
  // With SSO only there is no password here: a new sign-in at the provider is the check
  // (the browser comes back to the console; the change is then made again).
  ssoSettings().then((sso) => {
    const local = $("reauth-local");
    const viaSso = $("reauth-sso");
    local.hidden = sso.sso_only;
    viaSso.hidden = !sso.sso_only;
    if (sso.sso_only) viaSso.replaceChildren(h("p", {}, "Sign in again with your organisation, then repeat the change:"), h("ul", { class: "plain" }, providerLinks(sso)));
  });
  return promise;
}

function setUpReauth() {
  const dialog = $("reauth");
  const finish = (error) => {
    const waiting = reauthWaiting;
    reauthWaiting = null;
    if (dialog.open) dialog.close();
    if (!waiting) return;
    if (error) waiting.reject(error);
    else waiting.resolve();
  };
  $("reauth-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = { password: $("reauth-password").value };
    const code = $("reauth-code").value.trim();
    if (code) body.totp_code = code;
    try {
      await api("POST", "/v1/auth/reauth", { body, quiet: true });
      say("Confirmed.");
      finish();
    } catch (error) {
      $("reauth-error").textContent = `${error.code}: ${error.message}`;
    }
  });
  $("reauth-cancel").addEventListener("click", () =>
    finish(new ApiError(403, { error: { code: "fresh_auth_required", message: "not confirmed: the change was not made" } })),
  );
  dialog.addEventListener("cancel", (event) => {
    event.preventDefault();
    $("reauth-cancel").click();
  });
}

// ----- Session and navigation -------------------------------------------------------------

let me = null;
let checked = false;

const PAGES = [
  { path: "apps", title: "Apps and queries", roles: ["admin", "developer"], render: appsPage },
  { path: "datasources", title: "Datasources", roles: ["admin"], render: datasourcesPage },
  { path: "users", title: "Users", roles: ["admin"], render: usersPage },
  { path: "keys", title: "API keys", roles: ["admin", "developer"], render: keysPage },
  { path: "audit", title: "Audit log", roles: ["admin"], render: auditPage },
  { path: "egress", title: "Egress", roles: ["admin"], render: egressPage },
  { path: "account", title: "Account", roles: ["admin", "developer", "viewer"], render: accountPage },
];

const allowed = () => PAGES.filter((p) => me && p.roles.includes(me.role));

function go(hash) {
  if (location.hash === hash) render();
  else location.hash = hash;
}

/** The page for the current hash: `#/apps/shop/queries/recent` -> ["apps", "shop", "queries", "recent"]. */
function parts() {
  return location.hash
    .replace(/^#\/?/, "")
    .split("/")
    .filter(Boolean)
    .map((p) => decodeURIComponent(p));
}

/**
 * Shows a new page: its heading and first children in a view of its own, which the page's
 * later (awaited) parts are appended to through `view(heading)`. A page left meanwhile
 * appends to its own detached view, never into the next page.
 */
function setPage(title, ...children) {
  document.title = `${title} · Sluice console`;
  const heading = h("h1", { tabindex: "-1" }, title);
  $("page").replaceChildren(h("div", { class: "view" }, heading, ...children));
  return heading;
}

const view = (heading) => heading.parentNode;

let renderCount = 0;

async function render() {
  const mine = ++renderCount;
  clearError();
  if (!checked) {
    checked = true;
    try {
      me = (await api("GET", "/v1/auth/me", { quiet: true })).data;
    } catch {
      me = null;
    }
    if (mine !== renderCount) return;
  }
  renderHeader();
  if (!me) return signInPage();
  if (me.mfa_enrolment_required) return enrolPage();
  const [path, ...rest] = parts();
  const page = PAGES.find((p) => p.path === path);
  if (!page) {
    go(`#/${allowed()[0].path}`);
    return;
  }
  if (!page.roles.includes(me.role)) {
    setPage("Not available", h("p", {}, "This page is for admins. Your account can use the pages in the menu."));
    return;
  }
  const heading = await page.render(rest);
  // After a move between pages, focus goes to the new page's heading (screen readers read
  // it); on the first load it stays at the top, where Tab reaches "Skip to content" first.
  if (heading && moved && mine === renderCount && document.activeElement === document.body) heading.focus();
}

function renderHeader() {
  const list = $("nav-list");
  const current = parts()[0];
  list.replaceChildren(
    ...allowed().map((p) =>
      h("li", {}, h("a", { href: `#/${p.path}`, "aria-current": p.path === current ? "page" : null }, p.title)),
    ),
  );
  $("nav").hidden = !me || me.mfa_enrolment_required;
  $("who").hidden = !me;
  $("who-text").textContent = me ? `${me.email} (${me.role})` : "";
}

async function signOut() {
  try {
    await api("POST", "/v1/auth/logout", { quiet: true });
  } catch {
    // Signed out already.
  }
  me = null;
  say("Signed out.");
  go("#/");
}

// ----- Sign in ----------------------------------------------------------------------------

function signInPage() {
  const email = h("input", { name: "email", type: "email", autocomplete: "username", required: true });
  const password = h("input", { name: "password", type: "password", autocomplete: "current-password", required: true });
  const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code" });
  const useRecovery = h("input", { type: "checkbox", name: "recovery" });
  const second = h(
    "fieldset",
    { hidden: true },
    h("legend", {}, "Second factor"),
    field("Authenticator code (or recovery code)", code),
    h("p", {}, h("label", {}, useRecovery, " This is a recovery code")),
  );
  const form = h(
    "form",
    { class: "card", id: "sign-in", "aria-labelledby": "sign-in-title" },
    h("h2", { id: "sign-in-title" }, "Sign in"),
    field("Email", email),
    field("Password", password),
    second,
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Sign in")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const body = { email: email.value, password: password.value };
    if (!second.hidden && code.value.trim()) {
      body[useRecovery.checked ? "recovery_code" : "totp_code"] = code.value.trim();
    }
    try {
      me = (await api("POST", "/v1/auth/login", { body, quiet: true })).data;
      say(`Signed in as ${me.email}.`);
      if (!parts()[0]) go(`#/${allowed()[0].path}`);
      else render();
    } catch (error) {
      if (error.code === "mfa_required") {
        second.hidden = false;
        say("Enter the code from your authenticator app.");
        code.focus();
      } else {
        showError(error);
      }
    }
  });
  const heading = setPage("Sluice console", form);
  email.focus();
  ssoChoices(form);
  return heading;
}

let ssoCache = null;

/** GET /v1/auth/sso, once: `{sso_only, providers}` (none when it cannot be read). */
async function ssoSettings() {
  if (!ssoCache) {
    try {
      const { data } = await api("GET", "/v1/auth/sso", { quiet: true });
      ssoCache = { sso_only: !!data.sso_only, providers: Array.isArray(data.providers) ? data.providers : [] };
    } catch {
      return { sso_only: false, providers: [] };
    }
  }
  return ssoCache;
}

/** A link per provider that signs in and comes back to the console. */
function providerLinks(sso) {
  return sso.providers.map((p) =>
    h("li", {}, h("a", { class: "button", href: `/v1/auth/oidc/${enc(p.name)}/start?return_to=${enc("/console")}` }, `Sign in with ${p.label || p.name}`)),
  );
}

/**
 * The instance's single sign-on providers (GET /v1/auth/sso) as links under the form; with
 * SSO only, the password form goes and the links stay. The provider's callback brings the
 * browser back to /console.
 */
async function ssoChoices(form) {
  const sso = await ssoSettings();
  if (sso.providers.length === 0 || !form.isConnected) return;
  const links = providerLinks(sso);
  const section = h(
    "section",
    { class: "card", id: "sso", "aria-labelledby": "sso-title" },
    h("h2", { id: "sso-title" }, sso.sso_only ? "Sign in with your organisation" : "Or sign in with"),
    h("ul", { class: "plain" }, links),
  );
  if (sso.sso_only) form.replaceWith(section);
  else form.after(section);
}

// ----- MFA enrolment ----------------------------------------------------------------------

/** The enrolment steps: QR code and secret, a code to confirm, then the recovery codes. */
function enrolment(onDone) {
  const box = h("section", { class: "card", "aria-labelledby": "mfa-title" }, h("h2", { id: "mfa-title" }, "Two-factor authentication"));
  const start = h("button", { type: "button", class: "primary" }, "Set up an authenticator app");
  append(box, [h("p", {}, "Scan a QR code with an authenticator app (TOTP), then confirm with a code it shows."), start]);
  start.addEventListener("click", async () => {
    clearError();
    try {
      const { data } = await api("POST", "/v1/auth/mfa/enroll");
      const bytes = new TextEncoder().encode(data.qr_svg);
      let binary = "";
      for (const b of bytes) binary += String.fromCharCode(b);
      const code = h("input", { name: "code", inputmode: "numeric", autocomplete: "one-time-code", required: true, pattern: "[0-9]{6}" });
      const confirm = h(
        "form",
        { id: "mfa-confirm" },
        field("Code from the app", code),
        h("p", {}, h("button", { type: "submit", class: "primary" }, "Turn on two-factor authentication")),
      );
      box.replaceChildren(
        h("h2", { id: "mfa-title" }, "Two-factor authentication"),
        h("img", { class: "qr", src: `data:image/svg+xml;base64,${btoa(binary)}`, alt: "QR code of the authenticator secret" }),
        h("p", {}, "Or type this secret into the app:"),
        h("p", { class: "secret", id: "mfa-secret" }, data.secret),
        h("details", {}, h("summary", {}, "otpauth URI"), h("p", { class: "mono" }, data.otpauth_uri)),
        confirm,
      );
      code.focus();
      confirm.addEventListener("submit", async (event) => {
        event.preventDefault();
        clearError();
        try {
          const result = (await api("POST", "/v1/auth/mfa/confirm", { body: { code: code.value.trim() } })).data;
          const done = h("button", { type: "button", class: "primary" }, "I have saved these codes");
          box.replaceChildren(
            h("h2", { id: "mfa-title" }, "Recovery codes"),
            h("p", {}, "Two-factor authentication is on. Save these recovery codes somewhere safe: each works once, instead of a code from the app. They are not shown again."),
            h("ul", { class: "codes", id: "recovery-codes" }, result.recovery_codes.map((c) => h("li", {}, c))),
            done,
          );
          say("Two-factor authentication is on.");
          done.focus();
          done.addEventListener("click", async () => {
            me = (await api("GET", "/v1/auth/me")).data;
            onDone();
          });
        } catch (error) {
          showError(error);
        }
      });
    } catch (error) {
      showError(error);
    }
  });
  return box;
}

function enrolPage() {
  return setPage(
    "Set up two-factor authentication",
    h("p", {}, "Admins must use two-factor authentication. Until it is set up, this account can do nothing else."),
    enrolment(() => go("#/apps")),
  );
}

function accountPage() {
  const list = h(
    "dl",
    {},
    h("dt", {}, "Email"),
    h("dd", {}, me.email),
    h("dt", {}, "Role"),
    h("dd", {}, me.role),
    h("dt", {}, "Two-factor authentication"),
    h("dd", {}, me.mfa_enabled ? "on" : "off"),
  );
  return setPage("Account", list, me.mfa_enabled ? null : enrolment(() => render()));
}

// ----- Apps and queries -------------------------------------------------------------------

async function appsPage(rest) {
  const [app, sub, query] = rest;
  if (app && sub === "queries" && query) return queryEditor(app, query);
  if (app) return appPage(app);
  const heading = setPage("Apps and queries");
  say("Loading apps…");
  try {
    const { data } = await api("GET", "/v1/admin/apps");
    const rows = data.apps.map((a) =>
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: `#/apps/${enc(a.name)}` }, a.name)),
        h("td", {}, a.visibility || "private"),
        h("td", {}, a.queries.length ? a.queries.map((q, i) => [i ? ", " : "", h("a", { href: `#/apps/${enc(a.name)}/queries/${enc(q)}` }, q)]) : h("span", { class: "muted" }, "none")),
      ),
    );
    append(view(heading), [
      h("p", { class: "muted" }, `Catalog revision ${data.revision}.`),
      h("table", { id: "apps" }, h("caption", { class: "muted" }, "Apps you may edit"), h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "App"), h("th", { scope: "col" }, "Visibility"), h("th", { scope: "col" }, "Queries"))), h("tbody", {}, rows)),
    ]);
    say(`${data.apps.length} app(s).`);
  } catch (error) {
    showError(error);
  }
  return heading;
}

async function appPage(app) {
  const heading = setPage(`App ${app}`, h("p", {}, h("a", { href: "#/apps" }, "← All apps")));
  try {
    const { data } = await api("GET", `/v1/admin/apps/${enc(app)}/queries`);
    const rows = data.queries.map((q) =>
      h(
        "tr",
        {},
        h("td", {}, h("a", { href: `#/apps/${enc(app)}/queries/${enc(q.name)}` }, q.name)),
        h("td", {}, q.datasource),
        h("td", {}, q.description || ""),
      ),
    );
    const name = h("input", { name: "name", required: true, pattern: "[A-Za-z0-9_-]{1,64}" });
    const create = h("form", { class: "card row", id: "new-query" }, field("New query name", name), h("button", { type: "submit" }, "Create query"));
    create.addEventListener("submit", (event) => {
      event.preventDefault();
      go(`#/apps/${enc(app)}/queries/${enc(name.value)}`);
    });
    append(view(heading), [
      h("h2", {}, "Queries"),
      h("table", { id: "queries" }, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Query"), h("th", { scope: "col" }, "Datasource"), h("th", { scope: "col" }, "Description"))), h("tbody", {}, rows)),
      create,
    ]);
    say(`${data.queries.length} quer${data.queries.length === 1 ? "y" : "ies"} in ${app}.`);
    if (me.role === "admin") await membersSection(app, view(heading));
  } catch (error) {
    showError(error);
  }
  return heading;
}

async function membersSection(app, into) {
  const section = h("section", { class: "card", "aria-labelledby": "members-title" }, h("h2", { id: "members-title" }, "Members"));
  into.append(section);
  const [{ data: members }, { data: users }] = await Promise.all([
    api("GET", `/v1/admin/apps/${enc(app)}/members`),
    api("GET", "/v1/admin/users"),
  ]);
  const byId = new Map(users.users.map((u) => [u.id, u]));
  const rows = members.members.map((id) => {
    const remove = h("button", { type: "button" }, "Remove");
    remove.addEventListener("click", async () => {
      try {
        await api("DELETE", `/v1/admin/apps/${enc(app)}/members/${enc(id)}`);
        await render();
        say("Member removed.");
      } catch (error) {
        showError(error);
      }
    });
    return h("tr", {}, h("td", {}, byId.get(id)?.email || id), h("td", {}, members.editors.includes(id) ? "editor" : "member"), h("td", {}, remove));
  });
  const who = h("select", { name: "user" }, users.users.map((u) => h("option", { value: u.id }, `${u.email} (${u.role})`)));
  const editor = h("input", { type: "checkbox", name: "editor" });
  const add = h("form", { class: "row" }, field("User", who), h("label", {}, editor, " may edit the queries"), h("button", { type: "submit" }, "Add member"));
  add.addEventListener("submit", async (event) => {
    event.preventDefault();
    try {
      await api("PUT", `/v1/admin/apps/${enc(app)}/members/${enc(who.value)}`, { body: { editor: editor.checked } });
      await render();
      say("Member added.");
    } catch (error) {
      showError(error);
    }
  });
  append(section, [
    rows.length ? h("table", {}, h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "User"), h("th", { scope: "col" }, "Access"), h("th", { scope: "col" }, "Action"))), h("tbody", {}, rows)) : h("p", { class: "muted" }, "No members."),
    add,
  ]);
}

/** Problems of a 422 answer; a template's "line N, column M: ..." is shown at the line. */
function problemList(error, textarea, prefix) {
  const items = error.problems.map((p) => {
    const match = /^line (\d+), column (\d+): (.*)$/s.exec(p.message);
    if (match && textarea && p.location.endsWith(".sql")) {
      const [line, column] = [Number(match[1]), Number(match[2])];
      const go = h("button", { type: "button" }, `Go to line ${line}`);
      go.addEventListener("click", () => selectLine(textarea, line, column));
      return h("li", {}, h("strong", {}, `SQL line ${line}, column ${column}: `), match[3], " ", go);
    }
    return h("li", {}, h("code", {}, p.location || prefix), ": ", p.message);
  });
  return h("ul", {}, items);
}

function selectLine(textarea, line, column) {
  const lines = textarea.value.split("\n");
  let start = 0;
  for (let i = 0; i < line - 1 && i < lines.length; i++) start += lines[i].length + 1;
  const end = start + (lines[line - 1] || "").length;
  textarea.focus();
  textarea.setSelectionRange(Math.min(start + column - 1, end), end);
}

function resultTable(data) {
  if (!data || !Array.isArray(data.columns)) return h("pre", { class: "mono" }, JSON.stringify(data, null, 2));
  return h(
    "table",
    { class: "result" },
    h("thead", {}, h("tr", {}, data.columns.map((c) => h("th", { scope: "col" }, c.name)))),
    h("tbody", {}, (data.rows || []).map((r) => h("tr", {}, r.map((v) => h("td", {}, typeof v === "string" ? v : JSON.stringify(v)))))),
  );
}

async function queryEditor(app, name) {
  const heading = setPage(`Query ${app}/${name}`, h("p", {}, h("a", { href: `#/apps/${enc(app)}` }, `← App ${app}`)));
  let etag = null;
  let stored = {};
  let exists = true;
  try {
    const got = await api("GET", `/v1/admin/apps/${enc(app)}/queries/${enc(name)}`, { quiet: false });
    etag = got.etag;
    stored = got.data;
  } catch (error) {
    if (error.code !== "not_found" || error.message.startsWith("no app")) {
      showError(error);
      return heading;
    }
    exists = false;
  }
  const datasource = h("input", { name: "datasource", required: true, value: stored.datasource || "" });
  const description = h("input", { name: "description", value: stored.description || "" });
  const sql = h("textarea", { name: "sql", rows: "8", spellcheck: "false", value: stored.sql || "" });
  sql.value = stored.sql || "";
  const params = h("textarea", { name: "params", rows: "4", spellcheck: "false", class: "small" });
  params.value = JSON.stringify(stored.params || {}, null, 2);
  const problems = h("div", { id: "sql-problems", role: "alert", "aria-live": "assertive" });

  const conflict = h("div", { id: "conflict", role: "alert", hidden: true });
  const saveButton = h("button", { type: "submit", class: "primary" }, exists ? "Save" : "Create");
  const form = h(
    "form",
    { class: "card", id: "query-form", "aria-label": "Edit the query" },
    h("div", { class: "row" }, field("Datasource", datasource), field("Description", description)),
    h("div", { class: "editor" }, field("SQL", sql, "Params are written {{ params.NAME }}; the caller's fields {{ user.FIELD }}."), h("aside", { "aria-label": "Compile problems" }, problems)),

    field("Params (JSON)", params, 'e.g. {"status": {"type": "text", "required": true}}'),
    conflict,
    h("p", { class: "actions" }, saveButton),
  );
  // The SQL field is described by its hint and by the compile problems beside it.
  sql.setAttribute("aria-describedby", `${sql.getAttribute("aria-describedby")} sql-problems`);
  const draft = () => {
    const body = { ...stored };
    for (const key of ["name", "etag", "revision"]) delete body[key];
    body.datasource = datasource.value.trim();
    body.sql = sql.value;
    if (description.value.trim()) body.description = description.value.trim();
    else delete body.description;
    body.params = JSON.parse(params.value || "{}");
    return body;
  };
  const write = async (body) => {
    problems.replaceChildren();
    conflict.hidden = true;
    const headers = exists ? { "If-Match": etag } : { "If-None-Match": "*" };
    try {
      const result = await api("PUT", `/v1/admin/apps/${enc(app)}/queries/${enc(name)}`, { body, headers });
      etag = result.etag;
      stored = result.data;
      exists = true;
      saveButton.textContent = "Save";
      say(`Saved: catalog revision ${result.data.revision}.`);
      return true;
    } catch (error) {
      if (error.code === "precondition_failed" || error.code === "precondition_required") {
        const reload = h("button", { type: "button" }, "Reload their version");
        reload.addEventListener("click", () => render());
        conflict.replaceChildren(
          h("p", {}, h("strong", {}, "Someone else changed this query"), " since you opened it (or deleted it). Your change was not saved. Reload to see the stored version; copy your text first if you want to keep it."),
          reload,
        );
        conflict.hidden = false;
        say("Not saved: the query changed meanwhile.");
        reload.focus();
      } else if (error.problems.length) {
        problems.replaceChildren(h("p", {}, h("strong", {}, error.message)), problemList(error, sql, "query"));
        say("Not saved: the query does not compile.");
      } else {
        showError(error);
      }
      return false;
    }
  };
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    let body;
    try {
      body = draft();
    } catch (error) {
      showError(new Error(`Params are not valid JSON: ${error.message}`));
      params.focus();
      return;
    }
    if (await write(body)) history.reload();
  });

  // Preview as a user.
  const as = h("input", { name: "as", required: true, value: me.email, autocomplete: "off" });
  const previewParams = h("textarea", { name: "preview-params", rows: "2", spellcheck: "false", class: "small" });
  previewParams.value = "{}";
  const output = h("div", { id: "preview-result", "aria-live": "polite" });
  const preview = h(
    "form",
    { class: "card", id: "preview", "aria-labelledby": "preview-title" },
    h("h2", { id: "preview-title" }, "Preview as a user"),
    h("div", { class: "row" }, field("User (email or id)", as), field("Params (JSON)", previewParams)),
    h("p", {}, h("button", { type: "submit" }, "Run the draft")),
    output,
  );
  preview.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    output.replaceChildren();
    try {
      const body = { as: as.value.trim(), params: JSON.parse(previewParams.value || "{}"), query: draft() };
      const { data } = await api("POST", `/v1/admin/apps/${enc(app)}/queries/${enc(name)}/preview`, { body });
      output.replaceChildren(h("p", {}, `${data.row_count ?? 0} row(s)`), resultTable(data));
      say("Preview done.");
    } catch (error) {
      if (error.problems && error.problems.length) output.replaceChildren(h("div", { class: "problems" }, problemList(error, sql, "query")));
      else showError(error);
    }
  });

  // History and rollback.
  const historyBox = h("section", { class: "card", id: "history", "aria-labelledby": "history-title" }, h("h2", { id: "history-title" }, "History"));
  const history = {
    async reload() {
      if (!exists) {
        historyBox.replaceChildren(h("h2", { id: "history-title" }, "History"), h("p", { class: "muted" }, "A new query has no history yet."));
        return;
      }
      try {
        const { data } = await api("GET", `/v1/admin/apps/${enc(app)}/queries/${enc(name)}/history`);
        const rows = data.versions.map((v, i) => {
          let action = h("span", { class: "muted" }, i === 0 ? "current" : "");
          if (i > 0 && v.query) {
            action = h("button", { type: "button" }, `Roll back to revision ${v.revision}`);
            action.addEventListener("click", async () => {
              const body = { ...v.query };
              if (await write(body)) render();
            });
          }
          const summary = v.query ? (v.query.sql || "").split("\n")[0] : "(deleted)";
          return h("tr", {}, h("td", { class: "num" }, v.revision), h("td", {}, v.applied_at), h("td", {}, v.source), h("td", {}, h("code", {}, summary)), h("td", {}, action));
        });
        historyBox.replaceChildren(
          h("h2", { id: "history-title" }, "History"),
          h("table", {}, h("thead", {}, h("tr", {}, ["Revision", "When", "By", "SQL (first line)", "Action"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
        );
      } catch (error) {
        historyBox.replaceChildren(h("h2", { id: "history-title" }, "History"), h("p", { class: "muted" }, `${error.code}: ${error.message}`));
      }
    },
  };
  append(view(heading), [
    exists ? null : h("p", {}, "A new query: fill it in and create it."),
    form,
    preview,
    historyBox,
  ]);
  say(exists ? `Loaded (ETag ${etag}).` : "New query.");
  await history.reload();
  return heading;
}

// ----- Datasources ------------------------------------------------------------------------

function destination(d) {
  if (d.kind === "sqlite") return d.path;
  if (d.kind === "http") return d.base_url;
  return `${d.host}${d.port ? `:${d.port}` : ""}/${d.database} as ${d.user}`;
}

function secretState(d) {
  const fields = ["password", "tls_client_key"].filter((f) => d[f]);
  if (!fields.length) return h("span", { class: "muted" }, "no secret");
  return fields.map((f) => h("div", {}, `${f}: set${d[f].updated_at ? ` ${d[f].updated_at}` : ""}`));
}

async function datasourcesPage() {
  const heading = setPage("Datasources");
  try {
    const { data } = await api("GET", "/v1/admin/datasources");
    const results = h("section", { id: "test-result", "aria-live": "polite" });
    const rows = data.datasources.map((d) => {
      const test = h("button", { type: "button" }, `Test ${d.name}`);
      test.addEventListener("click", () => testDatasource(d.name, results));
      const setSecret = h("button", { type: "button" }, `Set password of ${d.name}`);
      setSecret.addEventListener("click", () => secretForm(d.name, results));
      return h(
        "tr",
        {},
        h("td", {}, d.name),
        h("td", {}, d.kind),
        h("td", {}, h("span", { class: "mono" }, destination(d))),
        h("td", {}, secretState(d)),
        h("td", { class: "actions" }, test, d.kind === "postgres" || d.kind === "mysql" ? setSecret : null),
      );
    });
    append(view(heading), [
      h("table", { id: "datasources" }, h("thead", {}, h("tr", {}, ["Name", "Kind", "Where", "Secrets", "Actions"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
      results,
      newDatasourceForm(),
    ]);
    say(`${data.datasources.length} datasource(s).`);
  } catch (error) {
    showError(error);
  }
  return heading;
}

async function testDatasource(name, results) {
  clearError();
  say(`Testing ${name}…`);
  try {
    const { data } = await api("POST", `/v1/admin/datasources/${enc(name)}/test`);
    results.replaceChildren(
      h("h2", {}, `Test of ${data.datasource}: `, h("span", { class: data.ok ? "ok" : "failed" }, data.ok ? "passed" : "failed")),
      h(
        "ol",
        { class: "steps" },
        data.steps.map((s) =>
          h("li", {}, h("strong", {}, s.step), " ", h("span", { class: s.status }, s.status), ` (${s.elapsed_ms} ms)`, s.detail ? `: ${s.detail}` : "", s.hint ? h("div", {}, h("em", {}, "Hint: "), s.hint) : null),
        ),
      ),
    );
    say(`Test of ${name}: ${data.ok ? "passed" : "failed"}.`);
  } catch (error) {
    showError(error);
  }
}

/** The write-only password: sent once, sealed by the server, never shown back. */
function secretForm(name, results) {
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password", required: true });
  const form = h(
    "form",
    { class: "card", id: "secret-form" },
    h("h2", {}, `New password for ${name}`),
    h("p", { class: "muted" }, "Write-only: the server seals it at once and never shows it back."),
    field("Password", password),
    h("p", { class: "actions" }, h("button", { type: "submit", class: "primary" }, "Set password")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    try {
      const { data, etag } = await api("GET", `/v1/admin/datasources/${enc(name)}`);
      const body = { ...data, password: { plaintext: password.value } };
      await api("PUT", `/v1/admin/datasources/${enc(name)}`, { body, headers: { "If-Match": etag } });
      password.value = "";
      await render();
      say(`Password of ${name} set.`);
    } catch (error) {
      password.value = "";
      if (error.problems.length) showError(error, problemList(error));
      else showError(error);
    }
  });
  results.replaceChildren(form);
  password.focus();
}

function newDatasourceForm() {
  const name = h("input", { name: "name", required: true });
  const kind = h("select", { name: "kind" }, ["postgres", "mysql", "sqlite"].map((k) => h("option", { value: k }, k)));
  const host = h("input", { name: "host" });
  const port = h("input", { name: "port", type: "number", min: "1", max: "65535" });
  const database = h("input", { name: "database" });
  const user = h("input", { name: "user", autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const allow = h("input", { name: "egress_allow", placeholder: "10.20.0.0/16" });
  const path = h("input", { name: "path" });
  const network = h("div", { class: "row" }, field("Host", host), field("Port", port), field("Database", database), field("User", user), field("Password (write-only)", password), field("Egress allow (CIDRs, comma-separated)", allow));
  const file = h("div", { class: "row", hidden: true }, field("File path", path));
  kind.addEventListener("change", () => {
    file.hidden = kind.value !== "sqlite";
    network.hidden = kind.value === "sqlite";
  });
  const form = h(
    "form",
    { class: "card", id: "new-datasource", "aria-labelledby": "new-datasource-title" },
    h("h2", { id: "new-datasource-title" }, "New datasource"),
    h("div", { class: "row" }, field("Name", name), field("Kind", kind)),
    network,
    file,
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Create datasource")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearError();
    const body = { kind: kind.value };
    if (kind.value === "sqlite") body.path = path.value;
    else {
      Object.assign(body, { host: host.value, database: database.value, user: user.value });
      if (port.value) body.port = Number(port.value);
      if (password.value) body.password = { plaintext: password.value };
      const cidrs = allow.value.split(",").map((c) => c.trim()).filter(Boolean);
      if (cidrs.length) body.egress_allow = cidrs;
    }
    try {
      await api("PUT", `/v1/admin/datasources/${enc(name.value)}`, { body, headers: { "If-None-Match": "*" } });
      password.value = "";
      const created = name.value;
      await render();
      say(`Datasource ${created} created.`);
    } catch (error) {
      if (error.problems.length) showError(error, problemList(error));
      else showError(error);
    }
  });
  return form;
}

// ----- Users ------------------------------------------------------------------------------

async function usersPage() {
  const heading = setPage("Users");
  try {
    const { data } = await api("GET", "/v1/admin/users");
    const now = Date.now() / 1000;
    const rows = data.users.map((u) => {
      const role = h("select", { "aria-label": `Role of ${u.email}` }, ["viewer", "developer", "admin"].map((r) => h("option", { value: r, selected: r === u.role }, r)));
      role.addEventListener("change", () => change(`/v1/admin/users/${enc(u.id)}/role`, "PUT", { role: role.value }, `Role of ${u.email}: ${role.value}.`));
      const disable = h("button", { type: "button" }, u.disabled ? `Enable ${u.email}` : `Disable ${u.email}`);
      disable.addEventListener("click", () => change(`/v1/admin/users/${enc(u.id)}/disabled`, "PUT", { disabled: !u.disabled }, `${u.email} ${u.disabled ? "enabled" : "disabled"}.`));
      const locked = u.locked_until && u.locked_until > now;
      const unlock = h("button", { type: "button" }, `Unlock ${u.email}`);
      unlock.addEventListener("click", () => change(`/v1/admin/users/${enc(u.id)}/unlock`, "POST", undefined, `${u.email} unlocked.`));
      return h(
        "tr",
        {},
        h("td", {}, u.email),
        h("td", {}, u.display_name),
        h("td", {}, role),
        h("td", {}, u.mfa_enabled ? "on" : "off"),
        h("td", {}, u.disabled ? "disabled" : locked ? `locked until ${when(u.locked_until)}` : "active"),
        h("td", {}, when(u.last_login_at)),
        h("td", { class: "actions" }, disable, locked ? unlock : null),
      );
    });
    const sso = await ssoSettings();
    append(view(heading), [
      // With SSO only, accounts come from the provider (or SCIM): the API refuses this form.
      sso.sso_only ? h("p", { class: "muted" }, "Accounts come from your identity provider (single sign-on only).") : newUserForm(),
      h("table", { id: "users" }, h("thead", {}, h("tr", {}, ["Email", "Name", "Role", "MFA", "State", "Last sign-in", "Actions"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
    ]);
    say(`${data.users.length} user(s).`);
  } catch (error) {
    showError(error);
  }
  return heading;
}

/** Creates an account (POST /v1/admin/users); without a password, the user sets one by reset. */
function newUserForm() {
  const email = h("input", { name: "email", type: "email", required: true, autocomplete: "off" });
  const name = h("input", { name: "display_name", required: true, autocomplete: "off" });
  const role = h("select", { name: "role" }, ["viewer", "developer", "admin"].map((r) => h("option", { value: r }, r)));
  const groups = h("input", { name: "groups", autocomplete: "off" });
  const password = h("input", { name: "password", type: "password", autocomplete: "new-password" });
  const form = h(
    "form",
    { class: "card", id: "new-user", "aria-labelledby": "new-user-title" },
    h("h2", { id: "new-user-title" }, "New user"),
    field("Email", email),
    field("Name", name),
    field("Role", role),
    field("Groups", groups, "comma-separated, optional"),
    field("Password", password, "optional: without one, the user sets it through a password reset"),
    h("p", {}, h("button", { type: "submit", class: "primary" }, "Create user")),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = {
      email: email.value.trim(),
      display_name: name.value.trim(),
      role: role.value,
      groups: groups.value.split(",").map((g) => g.trim()).filter(Boolean),
    };
    if (password.value) body.password = password.value;
    await change("/v1/admin/users", "POST", body, `User ${body.email} created.`);
  });
  return form;
}

/** One write, then the page again (with the outcome in the status line, or the error). */
async function change(path, method, body, done) {
  clearError();
  try {
    await api(method, path, { body });
  } catch (error) {
    await render();
    showError(error);
    return;
  }
  await render();
  say(done);
}

// ----- API keys ---------------------------------------------------------------------------

async function keysPage() {
  const heading = setPage("API keys");
  const shown = h("div", { id: "new-key", "aria-live": "polite" });
  try {
    const { data } = await api("GET", "/v1/auth/api-keys");
    const rows = data.api_keys.map((k) => {
      const revoke = h("button", { type: "button" }, `Revoke ${k.name}`);
      revoke.addEventListener("click", () => change(`/v1/auth/api-keys/${enc(k.id)}`, "DELETE", undefined, `Key ${k.name} revoked.`));
      const scope = [...k.scope.apps.map((a) => `${a}/*`), ...k.scope.queries].join(", ");
      return h(
        "tr",
        {},
        h("td", {}, k.name),
        h("td", { class: "mono" }, k.id),
        h("td", {}, scope),
        h("td", {}, when(k.created_at)),
        h("td", {}, when(k.last_used_at)),
        h("td", {}, k.revoked_at ? `revoked ${when(k.revoked_at)}` : k.expires_at ? `expires ${when(k.expires_at)}` : "active"),
        h("td", {}, k.revoked_at ? null : revoke),
      );
    });
    const name = h("input", { name: "name", required: true });
    const apps = h("input", { name: "apps" });
    const queries = h("input", { name: "queries" });
    const create = h(
      "form",
      { class: "card", id: "create-key", "aria-labelledby": "create-key-title" },
      h("h2", { id: "create-key-title" }, "New API key"),
      h("div", { class: "row" }, field("Name", name), field("Apps (comma-separated)", apps), field("Queries (app/query, comma-separated)", queries)),
      h("p", {}, h("button", { type: "submit", class: "primary" }, "Create key")),
    );
    const list = (input) => input.value.split(",").map((s) => s.trim()).filter(Boolean);
    create.addEventListener("submit", async (event) => {
      event.preventDefault();
      clearError();
      try {
        const { data: key } = await api("POST", "/v1/auth/api-keys", { body: { name: name.value, scope: { apps: list(apps), queries: list(queries) } } });
        await keysPage();
        $("new-key").replaceChildren(
          h("h2", {}, `Key ${key.name}`),
          h("p", {}, "Copy it now: this is the only time it is shown."),
          h("p", { class: "secret", id: "key-value" }, key.key),
        );
        say(`Key ${key.name} created.`);
      } catch (error) {
        showError(error);
      }
    });
    append(view(heading), [
      shown,
      h("table", { id: "keys" }, h("thead", {}, h("tr", {}, ["Name", "Id", "Scope", "Created", "Last used", "State", "Action"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
      create,
    ]);
    say(`${data.api_keys.length} key(s).`);
  } catch (error) {
    showError(error);
  }
  return heading;
}

// ----- Audit log --------------------------------------------------------------------------

async function auditPage() {
  const heading = setPage("Audit log");
  const filters = ["event", "user_id", "actor", "since", "until"].map((n) => [n, h("input", { name: n, placeholder: n === "since" || n === "until" ? "2026-01-31T00:00:00Z" : "" })]);
  const limit = h("input", { name: "limit", type: "number", min: "1", max: "1000", value: "50" });
  const form = h(
    "form",
    { class: "card row", id: "audit-filters", "aria-label": "Filters" },
    filters.map(([n, input]) => field(n.replace("_", " "), input)),
    field("limit", limit),
    h("button", { type: "submit", class: "primary" }, "Show"),
  );
  const output = h("div", { id: "audit-result" });
  append(view(heading), [form, output]);
  const load = async (cursor) => {
    clearError();
    const query = new URLSearchParams();
    for (const [n, input] of filters) if (input.value.trim()) query.set(n, input.value.trim());
    query.set("limit", limit.value || "50");
    if (cursor) query.set("cursor", cursor);
    try {
      const { data } = await api("GET", `/v1/admin/audit?${query}`);
      const rows = data.events.map((e) =>
        h("tr", {}, h("td", {}, when(e.at)), h("td", {}, e.event), h("td", {}, e.email || e.user_id || ""), h("td", {}, e.actor || ""), h("td", {}, e.ip || ""), h("td", {}, e.reason || ""), h("td", { class: "mono" }, e.details || "")),
      );
      const next = h("button", { type: "button" }, "Next page");
      next.addEventListener("click", () => load(data.next_cursor));
      output.replaceChildren(
        h("table", { id: "audit" }, h("thead", {}, h("tr", {}, ["Time", "Event", "Account", "Actor", "IP", "Reason", "Details"].map((t) => h("th", { scope: "col" }, t)))), h("tbody", {}, rows)),
        data.next_cursor ? next : h("p", { class: "muted" }, "End of the log."),
      );
      say(`${data.events.length} event(s).`);
    } catch (error) {
      showError(error);
    }
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load();
  });
  await load();
  return heading;
}

// ----- Egress -----------------------------------------------------------------------------

async function egressPage() {
  const heading = setPage("Egress");
  try {
    const { data } = await api("GET", "/v1/admin/egress");
    const list = (items, none) => (items.length ? h("ul", {}, items.map((i) => h("li", { class: "mono" }, i))) : h("p", { class: "muted" }, none));
    append(view(heading), [
      h("p", {}, "What a DBA allowlists: the addresses Sluice's connections come from, and where they go."),
      h("h2", {}, "Source addresses"),
      list(data.bind_addresses, "Chosen by the operating system (SLUICE_EGRESS_BIND is not set)."),
      h("h2", {}, "Public addresses after NAT"),
      list(data.public_ips, "None configured (SLUICE_EGRESS_PUBLIC_IPS)."),
      h("h2", {}, "Private networks every datasource may reach"),
      list(data.instance_allow, "None (SLUICE_EGRESS_ALLOW): public addresses only, plus each datasource's own list."),
      h("h2", {}, "Destinations"),
      h(
        "table",
        { id: "egress" },
        h("thead", {}, h("tr", {}, ["Datasource", "Kind", "Destination", "Its egress_allow"].map((t) => h("th", { scope: "col" }, t)))),
        h("tbody", {}, data.datasources.map((d) => h("tr", {}, h("td", {}, d.name), h("td", {}, d.kind), h("td", { class: "mono" }, d.destination), h("td", { class: "mono" }, d.egress_allow.join(", "))))),
      ),
    ]);
    say("Egress report loaded.");
  } catch (error) {
    showError(error);
  }
  return heading;
}

// ----- Start ------------------------------------------------------------------------------

setUpReauth();
$("sign-out").addEventListener("click", signOut);
// The skip link moves focus to the content; as a plain `#main` link it would be a route.
document.querySelector(".skip").addEventListener("click", (event) => {
  event.preventDefault();
  $("main").focus();
});
let moved = false;
window.addEventListener("hashchange", () => {
  moved = true;
  render();
});
render();
