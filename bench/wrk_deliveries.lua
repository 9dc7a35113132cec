-- wrk script for bench/run.sh: sends signed Staffify deliveries that
-- `fanout-bench --mode=requests` wrote beforehand (wrk's Lua has no
-- HMAC), the same bytes to fanout-server and to nginx.
--
--   wrk -t T -c C -d 5s -s bench/wrk_deliveries.lua URL -- PREFIX SLICES T \
--       [FIRST]
--
-- PREFIX.<FIRST> .. PREFIX.<FIRST+SLICES-1> (FIRST: 0 when not given) hold
-- whole HTTP requests, each preceded by its size in bytes and a newline.
-- Thread k of T sends the requests of slices FIRST+k, FIRST+k+T, ... in
-- order, so no two threads send the same delivery, nor two wrk processes
-- given slices apart; a thread that runs out starts its requests again
-- (retries, which fanout-server answers "duplicate") and counts that in
-- `wraps`. done() prints one "result key=value ..." line for run.sh.

local threads = {}

-- Runs in wrk's main Lua state, once per thread, before that thread's
-- init(): numbers the threads and keeps them for done().
function setup(thread)
  thread:set("index", #threads)
  table.insert(threads, thread)
end

-- The rest runs in each thread's own Lua state; `index` was set by setup.
local requests = {}
local next_request = 1
sent = 0
wraps = 0

function init(args)
  local prefix, slices, thread_count = args[1], tonumber(args[2]),
      tonumber(args[3])
  local first = tonumber(args[4] or "0")
  assert(prefix and slices and thread_count and first,
         "arguments: PREFIX SLICES THREADS [FIRST]")
  for slice = first + index, first + slices - 1, thread_count do
    local name = prefix .. "." .. slice
    local file = assert(io.open(name, "rb"))
    local text = file:read("*a")
    file:close()
    local at = 1
    while at <= #text do
      local newline = assert(text:find("\n", at, true), "truncated " .. name)
      local size = assert(tonumber(text:sub(at, newline - 1)),
                          "malformed " .. name)
      requests[#requests + 1] = text:sub(newline + 1, newline + size)
      at = newline + size + 1
    end
  end
  assert(#requests > 0, "no requests for thread " .. index)
end

function request()
  local next = requests[next_request]
  sent = sent + 1
  next_request = next_request + 1
  if next_request > #requests then
    next_request = 1
    wraps = wraps + 1
  end
  return next
end

-- summary.duration is in microseconds, and so are latency percentiles.
function done(summary, latency)
  local total_wraps, total_sent = 0, 0
  for _, thread in ipairs(threads) do
    total_wraps = total_wraps + thread:get("wraps")
    total_sent = total_sent + thread:get("sent")
  end
  local errors = summary.errors
  io.write(string.format(
      "result deliveries_per_s=%.1f p50_ms=%.4f p99_ms=%.4f answered=%d " ..
      "sent=%d non2xx=%d connect_errors=%d read_errors=%d " ..
      "write_errors=%d timeouts=%d wraps=%d seconds=%.3f\n",
      summary.requests / (summary.duration / 1e6),
      latency:percentile(50) / 1e3, latency:percentile(99) / 1e3,
      summary.requests, total_sent, errors.status, errors.connect,
      errors.read, errors.write, errors.timeout, total_wraps,
      summary.duration / 1e6))
end
