-- POST /api/v1/post-content as the benchmark user with a new title on every
-- request, so every generated slug is free (post_content.lua repeats one
-- title: its slugs take the -2, -3, … path).
-- args: token run
local counter = 0
local token, run = "", "0"
function init(args)
  token, run = args[1], args[2]
  counter = 0
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"title":"Distinct post %s %d %d","content":"A benchmark body that is long enough to be valid."}',
    run, thread_no, counter)
  return wrk.format("POST", "/api/v1/post-content",
    {["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token}, body)
end

-- Environment BENCH_PAUSE_MS > 0: each connection pauses that long between a
-- response and its next request (paced: latency at a moderate load).
local pause = tonumber(os.getenv("BENCH_PAUSE_MS") or "0")
if pause > 0 then
  function delay()
    return pause
  end
end
