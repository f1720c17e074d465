-- POST /api/v1/signup with a new e-mail and phone number on every request.
-- args: run base
--   e-mail: s{run}-{thread}-{n}@bench.example.com
--   phone:  +234803 followed by 7 digits = base + thread * 400000 + n
--   (bench.py gives each signup run its own base, a multiple of 1 000 000;
--   the seeded users use 0000001..0001000)
local counter = 0
local run, base = "0", 0
function init(args)
  run, base = args[1], tonumber(args[2])
  counter = 0
  wrk.headers["Content-Type"] = "application/json"
end

function request()
  counter = counter + 1
  local body = string.format(
    '{"name":"Bench Signup","email":"s%s-%d-%d@bench.example.com",' ..
    '"phone_number":"+234803%07d","country":"Nigeria","state":"Lagos",' ..
    '"password":"benchmark-password"}',
    run, thread_no, counter, base + thread_no * 400000 + counter)
  return wrk.format("POST", "/api/v1/signup", nil, body)
end
