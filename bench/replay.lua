-- wrk script: POST pre-generated JSON bodies (one per line of the file named by env BENCH_BODIES).
-- Each wrk thread takes every BENCH_THREADS-th line. When a thread has sent all its bodies it starts
-- again and appends digits to the number marked @C@ (the longitude: a change below 1e-6 degrees),
-- so no two requests carry the same bytes and no cache can answer. The API key, when any, comes
-- from env BENCH_API_KEY (never on the command line). done() prints one JSON line for the harness.

local threads = {}
local created = 0

function setup(thread)
  thread:set("id", created)
  created = created + 1
  table.insert(threads, thread)
end

function init(args)
  local path = os.getenv("BENCH_BODIES")
  local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
  local key = os.getenv("BENCH_API_KEY")
  wrk.method = "POST"
  wrk.headers["Content-Type"] = "application/json"
  if key ~= nil and key ~= "" then
    wrk.headers["X-API-Key"] = key
  end
  heads, tails = {}, {}
  local index = 0
  for line in io.lines(path) do
    if index % nthreads == id then
      local first, last = string.find(line, "@C@", 1, true)
      table.insert(heads, string.sub(line, 1, first - 1))
      table.insert(tails, string.sub(line, last + 1))
    end
    index = index + 1
  end
  count = #heads
  position = 0
  cycle = 0
end

function request()
  position = position + 1
  if position > count then
    position = 1
    cycle = cycle + 1
  end
  local mark = ""
  if cycle > 0 then
    mark = string.format("000000%d", cycle)
  end
  return wrk.format(nil, nil, nil, heads[position] .. mark .. tails[position])
end

function done(summary, latency, requests)
  local cycles = 0
  local bodies = 0
  for _, thread in ipairs(threads) do
    cycles = math.max(cycles, thread:get("cycle") or 0)
    bodies = bodies + (thread:get("count") or 0)
  end
  local e = summary.errors
  io.write(string.format(
    'BENCH_JSON {"requests": %d, "duration_us": %d, "bytes": %d, "bodies": %d, "max_cycle": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "max": %d, "p50": %d, "p90": %d, "p95": %d, "p99": %d}}\n',
    summary.requests, summary.duration, summary.bytes, bodies, cycles,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency.min, latency.mean, latency.max, latency:percentile(50), latency:percentile(90),
    latency:percentile(95), latency:percentile(99)))
end
