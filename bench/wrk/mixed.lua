-- 95% reads / 5% writes. Reads: GET /api/v1/content/{hot id} (85%) and the
-- default listing GET /api/v1/content (10%); writes: POST /api/v1/post-content
-- (5%), each of which invalidates every cached listing.
-- args: lo hi token
local items = {}
local listing, write

function init(args)
  local lo, hi, token = tonumber(args[1]), tonumber(args[2]), args[3]
  for id = lo, hi do
    items[#items + 1] = wrk.format("GET", "/api/v1/content/" .. id)
  end
  listing = wrk.format("GET", "/api/v1/content")
  write = wrk.format("POST", "/api/v1/post-content",
    { ["Content-Type"] = "application/json", ["Authorization"] = "Bearer " .. token },
    '{"title":"Mixed post","content":"A benchmark body that is long enough to be valid."}')
  math.randomseed(os.time() * 100 + thread_no)
end

function request()
  local r = math.random(100)
  if r <= 5 then
    return write
  elseif r <= 15 then
    return listing
  end
  return items[math.random(#items)]
end
