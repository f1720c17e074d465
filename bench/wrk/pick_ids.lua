-- GET {prefix}{id} with id drawn uniformly from lo..hi on every request.
-- args: prefix lo hi
-- Environment BENCH_PAUSE_MS > 0: each connection pauses that long between a
-- response and its next request (a paced probe instead of a closed loop at
-- full speed); wrk's latency excludes the pause.
local requests = {}
local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "0")

function init(args)
  local prefix, lo, hi = args[1], tonumber(args[2]), tonumber(args[3])
  for id = lo, hi do
    requests[#requests + 1] = wrk.format("GET", prefix .. id)
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
