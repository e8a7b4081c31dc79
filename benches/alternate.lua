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
-- $WRITE_DELAY_MS > 0 paces the writer: it waits that long before each request.
local pause = tonumber(os.getenv("WRITE_DELAY_MS") or "0")
if pause > 0 then
  delay = function()
    return pause
  end
end
