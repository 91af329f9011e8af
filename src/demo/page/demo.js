// The demo page's script: runs the demo app's queries with the Sluice client and shows the
// rows (as they stream, for "Stream rows") or the error, which names the param at fault.
import { createClient, SluiceError } from "/demo/sluice-client.js";

const client = createClient({ baseUrl: window.location.origin });
const status = document.getElementById("status");
const errorBox = document.getElementById("error");
const table = document.getElementById("result");
let running;

function showColumns(columns) {
  const head = table.tHead.rows[0];
  head.replaceChildren(...columns.map((column) => {
    const th = document.createElement("th");
    th.scope = "col";
    th.textContent = column.name;
    return th;
  }));
  table.tBodies[0].replaceChildren();
}

function addRow(row) {
  const tr = table.tBodies[0].insertRow();
  for (const cell of row) {
    tr.insertCell().textContent = cell === null ? "NULL" : typeof cell === "object" ? JSON.stringify(cell) : String(cell);
  }
}

function showError(error) {
  errorBox.hidden = false;
  if (error instanceof SluiceError) {
    const param = error.param ? ` (param ${error.param})` : "";
    errorBox.textContent = `${error.code}${param}: ${error.message} [request ${error.requestId ?? "?"}]`;
  } else if (error.name !== "AbortError") {
    errorBox.textContent = String(error);
  }
}

async function go(work) {
  running?.abort();
  running = new AbortController();
  errorBox.hidden = true;
  errorBox.textContent = "";
  status.textContent = "Running…";
  const started = performance.now();
  try {
    const rows = await work(running.signal);
    status.textContent = `${rows} row(s) in ${Math.round(performance.now() - started)} ms`;
  } catch (error) {
    status.textContent = "Failed";
    showError(error);
  }
}

document.getElementById("orders").addEventListener("submit", (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  const params = { limit: Number(form.get("limit")) };
  if (form.get("status")) params.status = form.get("status");
  if (event.submitter?.value === "stream") {
    go(async (signal) => {
      let count = 0;
      const rows = client.stream("demo", "list_orders", params, { signal, onColumns: showColumns });
      for await (const row of rows) {
        addRow(row);
        count += 1;
        status.textContent = `${count} row(s) so far…`;
      }
      return count;
    });
  } else {
    go(async (signal) => {
      const result = await client.run("demo", "list_orders", params, { signal });
      showColumns(result.columns);
      result.rows.forEach(addRow);
      return result.rowCount;
    });
  }
});

document.getElementById("customer").addEventListener("submit", (event) => {
  event.preventDefault();
  const raw = new FormData(event.target).get("id");
  // Sent as typed: a number when it looks like one, else the text, so a wrong type reaches
  // the gateway and comes back as an error naming the param.
  const id = /^\d+$/.test(raw) ? Number(raw) : raw;
  go(async (signal) => {
    const result = await client.run("demo", "get_customer", { id }, { signal });
    showColumns(result.columns);
    result.rows.forEach(addRow);
    return result.rowCount;
  });
});
