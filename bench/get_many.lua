-- GET the connection of a random tenant among BENCH_TENANTS (t00000, t00001, ...).
local token = os.getenv("BENCH_TOKEN")
local n = tonumber(os.getenv("BENCH_TENANTS"))
local headers = { ["Authorization"] = "Bearer " .. token }
local counter = 0
function setup(thread)
  thread:set("seed", counter)
  counter = counter + 1
end
function init(args)
  math.randomseed(os.time() + (seed or 0) * 7919)
end
request = function()
  local path = string.format("/tenants/t%05d/creative-cloud-connection", math.random(0, n - 1))
  return wrk.format("GET", path, headers)
end
