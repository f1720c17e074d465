-- POST /api/v1/post-content as the benchmark user (same body every time).
-- args: token
function init(args)
  wrk.method = "POST"
  wrk.path = "/api/v1/post-content"
  wrk.headers["Content-Type"] = "application/json"
  wrk.headers["Authorization"] = "Bearer " .. args[1]
  wrk.body = '{"title":"Benchmark post","content":"A benchmark body that is long enough to be valid."}'
end
