-- GET {prefix}{id} with id drawn uniformly from lo..hi on every request.
-- args: prefix lo hi
-- Environment BENCH_PAUSE_MS > 0: each connection pauses that long between a
-- response and its next request (a paced probe instead of a closed loop at
-- full speed); wrk's latency excludes the pause.
-- Environment BENCH_TOKEN non-empty: sent as `Authorization: Bearer …`.
local requests = {}
local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "0")
local token = os.getenv("BENCH_TOKEN") or ""

function init(args)
  local prefix, lo, hi = args[1], tonumber(args[2]), tonumber(args[3])
  local headers = nil
  if token ~= "" then
    headers = { ["Authorization"] = "Bearer " .. token }
  end
  for id = lo, hi do
    requests[#requests + 1] = wrk.format("GET", prefix .. id, headers)
  end
  math.randomseed(os.time() * 100 + thread_no)
end

function request()
  return requests[math.random(#requests)]
end

if pause > 0 then
  function delay()
    return pause
  end
end
