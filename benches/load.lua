-- wrk script for the Sluice load benchmark (benches/load.rs runs it; see docs/PERFORMANCE.md).
--
-- Every request POSTs the point query's params with a random customer (1..BENCH_CUSTOMERS)
-- and a random status, over keep-alive connections; with BENCH_MODE=get it sends plain GETs
-- instead (the HTTP floor run against /healthz). When wrk finishes, one machine-readable line
-- starting with "SLUICE_BENCH" gives the counts and latency percentiles (microseconds).

local statuses = { "new", "paid", "shipped", "cancelled" }
local customers = tonumber(os.getenv("BENCH_CUSTOMERS") or "1000")

local get_only = os.getenv("BENCH_MODE") == "get"

if not get_only then
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
end

-- The caller (replicated mode): a session cookie with its same-origin Origin, or an API key.
local cookie = os.getenv("BENCH_COOKIE")
if cookie and cookie ~= "" then
  wrk.headers["Cookie"] = cookie
  wrk.headers["Origin"] = os.getenv("BENCH_ORIGIN")
end
local authorization = os.getenv("BENCH_AUTHORIZATION")
if authorization and authorization ~= "" then
  wrk.headers["Authorization"] = authorization
end

-- Every request body is formatted once, up front: all customers x all statuses, so the
-- per-request work in Lua is one random pick and the load generator costs as little CPU as
-- wrk can (its CPU shares the machine with Sluice and PostgreSQL).
local requests = {}

function init(args)
  -- Each wrk thread has its own Lua state; seed them apart.
  math.randomseed(os.time() + (tonumber(tostring({}):match("0x(%x+)") or "0", 16) or 0))
  if get_only then
    return
  end
  for customer = 1, customers do
    for _, status in ipairs(statuses) do
      local body = string.format('{"params":{"customer":%d,"status":"%s"}}', customer, status)
      requests[#requests + 1] = wrk.format(nil, nil, nil, body)
    end
  end
end

-- Without a request() function wrk sends its one static request (the GET floor run).
if not get_only then
  function request()
    return requests[math.random(1, #requests)]
  end
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    "SLUICE_BENCH requests=%d duration_us=%d bytes=%d non2xx=%d connect=%d read=%d write=%d timeout=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d\n",
    summary.requests, summary.duration, summary.bytes, errors.status, errors.connect,
    errors.read, errors.write, errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
