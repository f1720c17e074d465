-- Appended to every benchmark script by bench/bench.py: prints one line of
-- JSON that bench.py parses (latencies in microseconds; "status" counts
-- non-2xx/3xx responses, the others are socket errors). With BENCH_STATUS=1
-- (the low-rate signup rows) it also tallies error statuses and keeps the
-- first error body, so a failing row says why. Every thread also gets a
-- global `thread_no` (0, 1, ...) that the scripts use to seed or to keep
-- their generated values apart.
local bench_threads = {}
function setup(thread)
  thread:set("thread_no", #bench_threads)
  bench_threads[#bench_threads + 1] = thread
end

if os.getenv("BENCH_STATUS") == "1" then
  error_statuses = {}
  first_error = ""
  function response(status, headers, body)
    if status >= 400 then
      error_statuses[status] = (error_statuses[status] or 0) + 1
      if first_error == "" then first_error = tostring(body):sub(1, 300) end
    end
  end
end

local function json_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return string.format("\\u%04x", c:byte()) end) .. '"'
end

function done(summary, latency, requests)
  local e = summary.errors
  local tally, sample = {}, ""
  for _, thread in ipairs(bench_threads) do
    local statuses = thread:get("error_statuses")
    if type(statuses) == "table" then
      for status, n in pairs(statuses) do tally[status] = (tally[status] or 0) + n end
    end
    local body = thread:get("first_error")
    if sample == "" and type(body) == "string" then sample = body end
  end
  local parts = {}
  for status, n in pairs(tally) do parts[#parts + 1] = string.format('"%d":%d', status, n) end
  io.write(string.format(
    'BENCH_JSON {"requests":%d,"duration_us":%d,"bytes":%d,"p50_us":%.0f,"p90_us":%.0f,' ..
    '"p99_us":%.0f,"max_us":%.0f,"mean_us":%.1f,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"error_statuses":{%s},"first_error":%s}\n',
    summary.requests, summary.duration, summary.bytes,
    latency:percentile(50), latency:percentile(90), latency:percentile(99),
    latency.max, latency.mean, e.connect, e.read, e.write, e.status, e.timeout,
    table.concat(parts, ","), json_string(sample)))
end
