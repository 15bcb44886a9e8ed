-- PUT switches across BENCH_TENANTS tenants. Each wrk thread walks its own slice of tenants in
-- order and flips the org on every pass, so every request is a real switch (never a no-op) and no
-- two requests race on one tenant.
local token = os.getenv("BENCH_TOKEN")
local n = tonumber(os.getenv("BENCH_TENANTS"))
local orgs = { os.getenv("BENCH_ORG_B"), os.getenv("BENCH_ORG_A") }
local threads = tonumber(os.getenv("BENCH_THREADS"))
local headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local k = 0
request = function()
  local size = math.floor(n / threads)
  local first = tid * size
  local idx = first + (k % size)
  local pass = math.floor(k / size)
  k = k + 1
  local body = '{"org_id":"' .. orgs[(pass % 2) + 1] .. '"}'
  local path = string.format("/tenants/t%05d/creative-cloud-connection", idx)
  return wrk.format("PUT", path, headers, body)
end
