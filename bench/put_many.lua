-- PUT switches across BENCH_TENANTS tenants. Each wrk thread walks its own slice of tenants in
-- order and flips the org on every pass, so every request is a real switch (never a no-op) and no
-- two requests race on one tenant.
local next_in_slice = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "slices.lua")
local token = os.getenv("BENCH_TOKEN")
local n = tonumber(os.getenv("BENCH_TENANTS"))
local orgs = { os.getenv("BENCH_ORG_B"), os.getenv("BENCH_ORG_A") }
local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
request = function()
  local idx, pass = next_in_slice(n)
  local body = '{"org_id":"' .. orgs[(pass % 2) + 1] .. '"}'
  local path = string.format("/tenants/t%05d/creative-cloud-connection", idx)
  return wrk.format("PUT", path, headers, body)
end
