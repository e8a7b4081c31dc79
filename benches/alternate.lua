-- wrk script: POST the JSON bodies in $BODY_A and $BODY_B in turn (a change and its reverse, so
-- every request writes).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = { os.getenv("BODY_A"), os.getenv("BODY_B") }
local n = 0
request = function()
  n = n + 1
  return wrk.format(nil, nil, nil, bodies[(n % 2) + 1])
end
