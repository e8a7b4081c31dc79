-- wrk script: POST the JSON body in $BODY with each request naming another of the seeded keys: the
-- text KEY in the body becomes appkey-main-<suffix of i>, i random below $KEYS (benches/seed.rs
-- names key i by the six-letter suffix of i), so no two requests in a row ask about one key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local template = os.getenv("BODY")
local keys = tonumber(os.getenv("KEYS") or "10000")

local function suffix(i)
  local out = {}
  for slot = 6, 1, -1 do
    out[slot] = string.char(65 + i % 26)
    i = math.floor(i / 26)
  end
  return table.concat(out)
end

init = function()
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16) % 100000)
end

request = function()
  local key = "appkey-main-" .. suffix(math.random(0, keys - 1))
  return wrk.format(nil, nil, nil, (template:gsub("KEY", key)))
end
